"""A real meter node behind the virtual Wi-SUN module, through a real pty (SPEC B1, B2, B4, X5).

The client is the scripted serial client of ``test_wisun.py``; the meter is a :class:`MeterNode`
of a small simulated fleet, so the values read over SKSENDTO are the fleet's own.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kenshin.broute import echonet as el
from kenshin.broute.credentials import BrouteCredentials, CredentialRegistry, Medium
from kenshin.broute.node import MeterNode
from kenshin.broute.skstack import link_local
from kenshin.broute.state import FleetState
from kenshin.broute.wisun import WisunServer, serve_wisun
from kenshin.cli.broute import broute_app, build_fleet, keep_stepping, start_wisun
from kenshin.core.ids import Area
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import Fleet
from tests.broute.fleetdata import first_key, shared_fleet
from tests.broute.fleetdata import request as el_request
from tests.broute.test_wisun import Client, scan_and_join, side

DIALECTS = ["bp35a1", "bp35c2"]
FIRST_MAC = "001D1290000000C1"
SECOND_MAC = "001D1290000000C2"


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return shared_fleet()  # never stepped here: the values stay put


@pytest.fixture
def registry(tmp_path: Path) -> CredentialRegistry:
    return CredentialRegistry(tmp_path / "kenshin-broute.json")


class Rig:
    """serve_wisun over a real node, and clients on extra virtual modules hearing the meter."""

    def __init__(self, server: WisunServer, node: MeterNode, dialect: str) -> None:
        self.server = server
        self.node = node
        self.dialect = dialect
        self.clients: list[Client] = []

    def client(self, mac: str, dialect: str | None = None) -> Client:
        path, _ = self.server.add_device(dialect or self.dialect, mac)
        client = Client(path, dialect or self.dialect)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.server.close()


@pytest.fixture(params=DIALECTS)
def rig(
    fleet: Fleet, registry: CredentialRegistry, request: pytest.FixtureRequest
) -> Iterator[Rig]:
    dialect: str = request.param
    node = MeterNode(FleetState(fleet), first_key(fleet, MeterClass.LV_1P3W, Generation.GEN2))
    server = serve_wisun(node, registry, node.supply_point_id, dialect, session_lifetime=600)
    rig = Rig(server, node, dialect)
    yield rig
    rig.close()


def sendto(client: Client, address: str, dialect: str, frame: bytes) -> list[str]:
    header = f"SKSENDTO 1 {address} 0E1A 1{side(dialect)} {len(frame):04X} "
    client.write(header.encode() + frame)
    return client.lines_until("OK", "FAIL")


def test_get_e0_e7_over_wisun_equals_the_fleet(rig: Rig, fleet: Fleet) -> None:
    hex_data = rig.dialect == "bp35a1"  # BP35C2 prints binary ERXUDP data by default
    creds = rig.server.credentials
    client = Client(rig.server.device_path, rig.dialect)  # the module serve_wisun started
    rig.clients.append(client)
    address, last = scan_and_join(client, rig.dialect, creds)
    assert address == rig.server.meter.ip
    assert last.split()[:3] == ["EVENT", "25", address]
    # after the join the meter announces its instance list (0xD5: one 0x028801 object)
    _, data = client.erxudp(hex_data)
    inf = el.decode(data)
    assert inf.esv is el.ESV.INF and inf.properties[0].edt == bytes.fromhex("01028801")

    frame = el_request(el.EOJ.lv_smart_meter(), el.ESV.GET, [0xE0, 0xE7, 0xD3, 0xE1], tid=0x4242)
    lines = sendto(client, address, rig.dialect, frame)
    assert lines[-2].split()[:2] == ["EVENT", "21"] and lines[-1] == "OK"
    header, data = client.erxudp(hex_data)
    client_ip = rig.server.module.ip
    assert header[1] == address and header[2] == client_ip
    reply = el.decode(data)
    assert reply.tid == 0x4242 and reply.esv is el.ESV.GET_RES
    assert reply.seoj == el.EOJ.lv_smart_meter()
    got = {p.epc: p.edt for p in reply.properties}
    key = rig.node.info.key
    register = int(fleet.meters.registers()[0, key])
    assert int.from_bytes(got[0xE0], "big") == register
    assert int.from_bytes(got[0xE7], "big", signed=True) == round(float(fleet.meters.power_w[key]))
    # E0 × D3 × E1 is the fleet's energy (SPEC M5)
    unit = {0x01: 0.1, 0x02: 0.01, 0x03: 0.001}[got[0xE1][0]]
    kwh = int.from_bytes(got[0xE0], "big") * int.from_bytes(got[0xD3], "big") * unit
    assert kwh == pytest.approx(register * fleet.population.kwh_per_count[key], rel=1e-12)
    assert rig.node.requests == 1  # the Get reached the node once, from the module's address
    held = rig.server.meter.sessions.active(rig.node.supply_point_id, Medium.WISUN)
    assert [s.device for s in held] == [client_ip]

    assert client.command("SKTERM", "EVENT 27", "FAIL")[-2:] == [
        "OK",
        f"EVENT 27 {address}{side(rig.dialect)}",
    ]
    assert not rig.server.meter.sessions.active(rig.node.supply_point_id, Medium.WISUN)
    assert sendto(client, address, rig.dialect, frame)[-1] == "FAIL ER10"  # no session
    assert rig.node.requests == 1


def test_wrong_password_is_event_24(rig: Rig) -> None:
    creds = rig.server.credentials
    wrong = BrouteCredentials(
        creds.supply_point_id, creds.route_id, "ZZZZZZZZZZZZ", creds.issued_at
    )
    client = rig.client(FIRST_MAC)
    address, last = scan_and_join(client, rig.dialect, wrong)
    assert last.split()[:3] == ["EVENT", "24", address]
    refusal = rig.server.meter.sessions.audit[-1]
    assert refusal.action == "refuse" and refusal.reason == "bad credentials"
    frame = el_request(el.EOJ.lv_smart_meter(), el.ESV.GET, [0xE0])
    assert sendto(client, address, rig.dialect, frame)[-1] == "FAIL ER10"
    assert rig.node.requests == 0  # nothing reached the meter


def test_a_second_device_is_refused_until_the_first_leaves(rig: Rig) -> None:
    creds = rig.server.credentials
    first = rig.client(FIRST_MAC)
    second = rig.client(SECOND_MAC, "bp35a1")
    address, last = scan_and_join(first, rig.dialect, creds)
    assert last.startswith("EVENT 25")
    _, last = scan_and_join(second, "bp35a1", creds)
    assert last == f"EVENT 24 {address}"  # Wi-SUN is 1:1 (SPEC B1)
    refusal = rig.server.meter.sessions.audit[-1]
    assert refusal.action == "refuse" and link_local(FIRST_MAC) in refusal.reason
    assert first.command("SKTERM", "EVENT 27", "FAIL")[-1].startswith(f"EVENT 27 {address}")
    lines = second.command(f"SKJOIN {address}", "EVENT 24", "EVENT 25")
    assert lines[-1] == f"EVENT 25 {address}"
    holders = rig.server.meter.sessions.active(rig.node.supply_point_id, Medium.WISUN)
    assert [s.device for s in holders] == [link_local(SECOND_MAC)]


def test_credentials_are_persisted_and_reissue_locks_out(
    rig: Rig, registry: CredentialRegistry, tmp_path: Path
) -> None:
    path = tmp_path / "kenshin-broute.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())["credentials"]
    assert [c["route_id"] for c in saved] == [rig.server.credentials.route_id]
    old = rig.server.credentials
    registry.issue(rig.node.supply_point_id)  # the old pair stops working at once
    client = rig.client(FIRST_MAC)
    client.command(f"SKSETPWD C {old.password}")
    client.command(f"SKSETRBID {old.route_id}")
    lines = client.command(f"SKSCAN 2 FFFFFFFF 6{side(rig.dialect)}", "EVENT 22")
    assert "EPANDESC" not in lines  # the old pairing ID is not heard any more


# ---------------------------------------------------------------------------------------------
# the CLI pieces


def test_start_wisun_follows_the_stepping_fleet(registry: CredentialRegistry) -> None:
    now = dt.datetime(2026, 4, 1, 12, 10, tzinfo=JST)
    fleet = build_fleet(60, 5, Area.TOKYO, 2, now=now)
    key = first_key(fleet, MeterClass.LV_1P3W, Generation.GEN2)
    server, clock = start_wisun(fleet, key, registry, "bp35c2", 6000.0, 600.0)
    stop = threading.Event()
    stepper = threading.Thread(target=keep_stepping, args=(fleet, clock, stop, server.meter.lock))
    client = Client(server.device_path, "bp35c2")
    try:
        assert server.credentials == registry.current(str(fleet.population.supply_point_id[key]))
        address, last = scan_and_join(client, "bp35c2", server.credentials)
        assert last.startswith("EVENT 25")
        client.erxudp(hex_data=False)
        stepper.start()
        deadline = time.monotonic() + 10  # 20 simulated minutes take 0.2 s at 6000×
        while fleet.now < now + dt.timedelta(minutes=20) and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        stepper.join(5)
        assert not stepper.is_alive()
        assert fleet.now >= now + dt.timedelta(minutes=20)  # the fleet kept moving
        frame = el_request(el.EOJ.lv_smart_meter(), el.ESV.GET, [0xE0, 0xD0])
        sendto(client, address, "bp35c2", frame)
        _, data = client.erxudp(hex_data=False)
        got = {p.epc: p.edt for p in el.decode(data).properties}
        assert int.from_bytes(got[0xE0], "big") == int(fleet.meters.registers()[0, key])
        d0 = got[0xD0]  # date-time(7) of the latest minute, then the registers
        year = int.from_bytes(d0[:2], "big")
        latest = dt.datetime(year, d0[2], d0[3], d0[4], d0[5], d0[6], tzinfo=JST)
        assert latest == fleet.now  # the node reads the fleet as it is now
    finally:
        stop.set()
        client.close()
        server.close()


def _default_fleet_spid(key: int) -> str:
    """A supply point of the fleet the B-route commands simulate by default."""
    from kenshin.fleet.simulator import Fleet, FleetConfig

    fleet = Fleet(FleetConfig(n_meters=2000, start=dt.datetime(2026, 4, 1, tzinfo=JST), seed=1))
    return str(fleet.population.supply_point_id[key])


def test_credentials_command_issues_shows_and_reissues(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    spid = _default_fleet_spid(42)
    args = ["credentials", "--meter", spid, "--credentials", str(path)]
    runner = CliRunner()
    first = runner.invoke(broute_app, args)
    assert first.exit_code == 0, first.output
    creds = CredentialRegistry(path).current(spid)
    assert creds is not None
    assert creds.route_id in first.output and creds.password in first.output
    again = runner.invoke(broute_app, args)
    assert again.exit_code == 0 and creds.route_id in again.output  # shown, not changed
    assert CredentialRegistry(path).current(spid) == creds
    new = runner.invoke(broute_app, [*args, "--reissue"])
    assert new.exit_code == 0
    reissued = CredentialRegistry(path).current(spid)
    assert reissued is not None and reissued.route_id != creds.route_id
    assert reissued.route_id in new.output and creds.route_id not in new.output
    bad = runner.invoke(broute_app, ["credentials", "--meter", "12", "--credentials", str(path)])
    assert bad.exit_code == 2


def test_credentials_only_for_installed_meters(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A typo must not hand a customer a pair that opens nothing: a supply point that is no
    meter of the simulated fleet, or of the --store named, is refused and nothing is written."""
    from kenshin.mdms.duckdb_store import DuckDBStore
    from tests.mdms.test_reports import fill
    from tests.test_cli import run

    path = tmp_path / "creds.json"
    common = ["broute", "credentials", "--credentials", str(path)]
    code, _, err = run(capsys, *common, "--meter", "0399999999999999999999")
    assert code == 2 and "no such meter in the simulated fleet" in err
    store = tmp_path / "s.duckdb"
    filled = DuckDBStore(store)
    fill(filled)  # meters 03000…0 to 03000…3
    filled.close()
    code, _, err = run(capsys, *common, "--store", str(store), "--meter", f"03{2:020d}")
    assert code == 0, err
    code, _, err = run(capsys, *common, "--store", str(store), "--meter", f"03{9:020d}")
    assert code == 2 and "no such meter in" in err
    assert CredentialRegistry(path).current(f"03{9:020d}") is None
    assert CredentialRegistry(path).current(f"03{2:020d}") is not None
