"""The B-route inside the running system (issue 13 item 1): ECHONET Lite nodes for meters of the
live fleet answer with the very registers the A-route delivered to the store (SPEC B1, B3, M5)."""

from __future__ import annotations

import datetime as dt
import socket
import threading

from kenshin.app.live_broute import LiveBRoute
from kenshin.app.system import build_system
from kenshin.broute.echonet import ESV, decode
from kenshin.broute.udp import Endpoint
from kenshin.core.channels import Channel
from kenshin.core.clock import AcceleratedClock
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms.duckdb_store import DuckDBStore
from tests.api.auth import authorized
from tests.broute.fleetdata import request

START = dt.datetime(2026, 4, 1, tzinfo=JST)


def ask(endpoint: Endpoint, deoj, epcs: list[int]) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(request(deoj, ESV.GET, epcs), (endpoint.host, endpoint.port))
        frame = decode(client.recv(2048))
    assert frame.esv is ESV.GET_RES
    return {p.epc: p.edt for p in frame.properties}


def test_the_b_route_shows_the_registers_the_a_route_stored(tmp_path) -> None:
    system = build_system(FleetConfig(n_meters=50, start=START, seed=9), tmp_path / "b.duckdb")
    lock = threading.Lock()
    keys = [0, 1, 2]
    broute = LiveBRoute(
        system.fleet,
        keys,
        [Endpoint("127.0.0.1", 0) for _ in keys],  # free ports
        AcceleratedClock(START, 60.0),
        lock,
    )
    try:
        system.run(START + dt.timedelta(hours=2))
        system.commit()
        served = broute.start()
        at = to_epoch_us(START + dt.timedelta(hours=2))
        reads = system.store.read_register_rows(Channel.ACTIVE_FORWARD, at, at)
        stored = dict(
            zip(
                reads.column("meter_key").to_pylist(),
                reads.column("register").to_pylist(),
                strict=True,
            )
        )
        for key, node, endpoint in zip(keys, broute.nodes, served, strict=True):
            got = ask(endpoint, node.meter.eoj, [0xE0, 0xD3, 0xE1])
            register = int.from_bytes(got[0xE0], "big")
            assert register == stored[key]  # the A-route's register read at 02:00, this meter
            assert register == int(system.fleet.meters.registers()[0][key])
            assert int.from_bytes(got[0xD3], "big") == int(system.fleet.population.coefficient[key])
    finally:
        broute.stop()
        system.close()


def test_broute_serve_on_a_store_shows_its_registers(tmp_path) -> None:
    """``kenshin broute serve|wisun --store S``: the fleet S was made for, brought to its newest
    slot, so the B-route's registers are those the A-route stored there."""
    from kenshin.cli.broute import attached_fleet

    path = tmp_path / "s.duckdb"
    config = FleetConfig(n_meters=40, start=START, seed=6)
    system = build_system(config, path)
    system.run(START + dt.timedelta(hours=5))
    system.close()
    fleet = attached_fleet(str(path))
    end = to_epoch_us(START + dt.timedelta(hours=5))
    assert fleet.meters.now_us == end
    store = DuckDBStore(path, read_only=True)
    try:
        reads = store.read_register_rows(Channel.ACTIVE_FORWARD, end, end)
    finally:
        store.close()
    stored = dict(
        zip(
            reads.column("meter_key").to_pylist(), reads.column("register").to_pylist(), strict=True
        )
    )
    registers = fleet.meters.registers()[0]
    assert len(stored) >= 40
    assert all(int(registers[key]) == value for key, value in stored.items() if key < 40)


def test_credentials_issued_by_the_api_open_the_live_wisun_module_at_once(tmp_path) -> None:
    """``kenshin up --wisun SPID``: the module checks joins against the registry the API issues
    into, so a pair issued (here: reissued) through the API joins at once and the old pair is
    refused (SPEC B2, B4)."""
    from fastapi.testclient import TestClient

    from kenshin.api.app import create_app
    from kenshin.app.live_broute import live_wisun
    from kenshin.broute.credentials import BrouteCredentials, CredentialRegistry
    from tests.broute.test_wisun import Client, scan_and_join

    system = build_system(FleetConfig(n_meters=30, start=START, seed=3), tmp_path / "w.duckdb")
    registry = CredentialRegistry(tmp_path / "kenshin-broute.json")
    lock = threading.Lock()
    module = None
    try:
        system.run(START + dt.timedelta(hours=1))
        spid = str(system.fleet.population.supply_point_id[0])
        module = live_wisun(system.fleet, 0, registry, AcceleratedClock(START, 60.0), lock)
        old = module.credentials  # issued when the module started
        with authorized(TestClient(create_app(system.store, broute_credentials=registry))) as api:
            issued = api.post(
                f"/api/v1/meters/{spid}/broute-credentials", params={"reissue": "true"}
            ).json()
        new = BrouteCredentials(spid, issued["route_id"], issued["password"], old.issued_at)
        client = Client(module.device_path, "bp35a1")
        try:
            _, last = scan_and_join(client, "bp35a1", new)
            assert last.split()[:2] == ["EVENT", "25"]  # joined with the API's pair
        finally:
            client.close()
        assert not registry.verify(spid, old.route_id, old.password)
    finally:
        if module is not None:
            module.close()
        system.close()
