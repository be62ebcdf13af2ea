"""The virtual Wi-SUN module, driven through a real pty like a B-route client program would."""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenshin.broute import echonet as el
from kenshin.broute.credentials import (
    AccessPolicy,
    BrouteCredentials,
    CredentialRegistry,
    Medium,
    SessionTable,
)
from kenshin.broute.skstack import SkStackModule, WisunMeter, link_local
from kenshin.broute.wisun import PtyRunner, open_wisun_pty, serve_wisun

SPID = "0300000000000000000042"
POWER_W = 1234
TIMEOUT = 5.0
LIFETIME = 600.0
DIALECTS = ["bp35a1", "bp35c2"]


class MeterStub:
    """A tiny ECHONET Lite endpoint: Get 0xE7 answers POWER_W, anything else Get_SNA."""

    def __init__(self) -> None:
        self.sources: list[str] = []

    def handle(self, data: bytes, source: str) -> list[bytes]:
        self.sources.append(source)
        frame = el.decode(data)
        if frame.esv is not el.ESV.GET:
            return []
        if [p.epc for p in frame.properties] == [0xE7]:
            value = el.Property(0xE7, POWER_W.to_bytes(4, "big"))
            return [el.encode(frame.reply(el.ESV.GET_RES, [value]))]
        return [el.encode(frame.reply(el.ESV.GET_SNA, frame.properties))]

    def announcement(self) -> bytes:
        instances = el.Property(0xD5, bytes((1, 0x02, 0x88, 0x01)))
        return el.encode(el.Frame(0, el.NODE_PROFILE, el.NODE_PROFILE, el.ESV.INF, (instances,)))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get_e7(tid: int = 1) -> bytes:
    frame = el.Frame(tid, el.CONTROLLER, el.LV_SMART_METER, el.ESV.GET, (el.Property(0xE7),))
    return el.encode(frame)


class Client:
    """A serial client on the pty device, reading with timeouts (never blocks a test forever)."""

    def __init__(self, path: str, dialect: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.dual = dialect == "bp35c2"
        self.buf = bytearray()

    def close(self) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            select.select([], [self.fd], [], TIMEOUT)
            view = view[os.write(self.fd, view) :]

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; got so far: {bytes(self.buf)!r}")
        readable, _, _ = select.select([self.fd], [], [], left)
        if readable:
            self.buf += os.read(self.fd, 4096)

    def read_until(self, marker: bytes, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            self._fill(deadline)
        end = self.buf.index(marker) + len(marker)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out

    def readline(self) -> str:
        return self.read_until(b"\r\n")[:-2].decode("latin-1")

    def lines_until(self, *prefixes: str) -> list[str]:
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if line.startswith(prefixes):
                return lines

    def command(self, line: str, *until: str) -> list[str]:
        """Send one command line; the lines up to OK / FAIL (or the given prefixes)."""
        self.write(line.encode() + b"\r\n")
        return self.lines_until(*(until or ("OK", "FAIL")))

    def erxudp(self, hex_data: bool, fields: int | None = None) -> tuple[list[str], bytes]:
        """Next ERXUDP: its fields and its data, read by length (binary data may hold CR LF).

        ``fields`` counts every token including ``ERXUDP`` and the data: 9 for BP35A1, 10 for
        BP35C2 (11 with SA2=1).
        """
        fields = fields or (10 if self.dual else 9)
        self.read_until(b"ERXUDP ")
        deadline = time.monotonic() + TIMEOUT
        while self.buf.count(b" ") < fields - 2:
            self._fill(deadline)
        parts = bytes(self.buf).split(b" ", fields - 2)[:-1]
        header = ["ERXUDP", *(p.decode() for p in parts)]
        length = int(header[-1], 16)
        size = length * 2 if hex_data else length
        start = sum(len(p) + 1 for p in parts)
        while len(self.buf) < start + size + 2:
            self._fill(deadline)
        raw = bytes(self.buf[start : start + size])
        assert self.buf[start + size : start + size + 2] == b"\r\n"
        del self.buf[: start + size + 2]
        return header, bytes.fromhex(raw.decode()) if hex_data else raw


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CredentialRegistry:
    return CredentialRegistry()


@pytest.fixture
def creds(registry: CredentialRegistry) -> BrouteCredentials:
    return registry.issue(SPID)


@pytest.fixture
def meter(registry: CredentialRegistry, creds: BrouteCredentials, clock: FakeClock) -> WisunMeter:
    sessions = SessionTable({Medium.WISUN: AccessPolicy.wisun(LIFETIME)}, clock=clock)
    return WisunMeter(MeterStub(), registry, SPID, sessions, mac="001D129112345678")


PtyFactory = Callable[..., Client]


@pytest.fixture
def pty_factory(meter: WisunMeter) -> Iterator[PtyFactory]:
    opened: list[tuple[Client, PtyRunner]] = []

    def make(dialect: str, mac: str, reauthenticate: bool = True) -> Client:
        module = SkStackModule(meter, dialect, mac, reauthenticate=reauthenticate)
        path, runner = open_wisun_pty(module, tick_interval=0.01)
        client = Client(path, dialect)
        opened.append((client, runner))
        return client

    yield make
    for client, runner in opened:
        client.close()
        runner.stop()


def side(dialect: str) -> str:
    return " 0" if dialect == "bp35c2" else ""


def scan_and_join(client: Client, dialect: str, creds: BrouteCredentials) -> tuple[str, str]:
    """The usual client sequence: credentials, scan, channel/PAN, SKLL64, SKJOIN."""
    assert client.command(f"SKSETPWD C {creds.password}")[-1] == "OK"
    assert client.command(f"SKSETRBID {creds.route_id}")[-1] == "OK"
    lines = client.command(f"SKSCAN 2 FFFFFFFF 6{side(dialect)}", "EVENT 22")
    found = {k.strip(): v for k, _, v in (x.partition(":") for x in lines if x.startswith("  "))}
    assert "EPANDESC" in lines
    assert found["PairID"] == creds.route_id[-8:]
    client.command(f"SKSREG S2 {found['Channel']}")
    client.command(f"SKSREG S3 {found['Pan ID']}")
    client.write(f"SKLL64 {found['Addr']}\r\n".encode())
    assert client.readline().startswith("SKLL64")  # echo
    address = client.readline()
    assert address == link_local(found["Addr"])
    lines = client.command(f"SKJOIN {address}", "EVENT 24", "EVENT 25")
    return address, lines[-1]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_scan_join_get_e7_and_term(
    pty_factory: PtyFactory, meter: WisunMeter, creds: BrouteCredentials, dialect: str
) -> None:
    client = pty_factory(dialect, "001D129000000001")
    version = client.command("SKVER")
    assert version[1] == ("EVER 1.2.10" if dialect == "bp35a1" else "EVER 1.4.2")
    address, last = scan_and_join(client, dialect, creds)
    assert last.split()[:3] == ["EVENT", "25", address]
    hex_data = dialect == "bp35a1"  # BP35C2 shows binary data until WOPT 01
    header, inf = client.erxudp(hex_data)
    assert header[1] == address
    announced = el.decode(inf)
    assert announced.esv is el.ESV.INF
    assert announced.properties[0].epc == 0xD5

    # TID 0x0D0A puts CR LF inside the binary payload
    frame = get_e7(tid=0x0D0A)
    client.write(f"SKSENDTO 1 {address} 0E1A 1{side(dialect)} {len(frame):04X} ".encode() + frame)
    lines = client.lines_until("OK", "FAIL")
    assert lines[0].startswith("SKSENDTO 1 ")  # echo of the header only
    assert lines[1].split()[:2] == ["EVENT", "21"] and lines[1].endswith(" 00")
    assert lines[2] == "OK"
    header, data = client.erxudp(hex_data)
    assert len(header) == (8 if dialect == "bp35a1" else 9)  # + the data: 9 or 10 fields
    assert header[1] == address and header[2] == link_local("001D129000000001")
    assert header[3:5] == ["0E1A", "0E1A"]
    reply = el.decode(data)
    assert reply.tid == 0x0D0A and reply.esv is el.ESV.GET_RES
    assert int.from_bytes(reply.properties[0].edt, "big") == POWER_W
    assert meter.endpoint.sources == [link_local("001D129000000001")]

    assert client.command("SKTERM", "EVENT 27", "FAIL")[-2:] == [
        "OK",
        f"EVENT 27 {address}" + side(dialect),
    ]
    actions = [e.action for e in meter.sessions.audit]
    assert actions == ["start", "end"]
    assert client.command("SKTERM")[-1] == "FAIL ER10"  # no session any more


@pytest.mark.parametrize("dialect", DIALECTS)
def test_data_format_options(
    pty_factory: PtyFactory, meter: WisunMeter, creds: BrouteCredentials, dialect: str
) -> None:
    client = pty_factory(dialect, "001D129000000002")
    client.write(b"ROPT\r")
    expected = b"OK 01\r" if dialect == "bp35a1" else b"OK 00\r"
    assert client.read_until(b"\r", TIMEOUT).startswith(b"ROPT")  # echo
    client.read_until(b"\n")
    assert client.read_until(b"\r") == expected
    client.write(b"WOPT 01\r")
    client.read_until(b"\n")
    assert client.read_until(b"\r") == b"OK\r"
    if dialect == "bp35c2":
        assert client.command("SKSREG SA2 1")[-1] == "OK"
    address, last = scan_and_join(client, dialect, creds)
    assert last.startswith("EVENT 25")
    client.erxudp(hex_data=True, fields=11 if dialect == "bp35c2" else 9)
    frame = get_e7()
    client.write(f"SKSENDTO 1 {address} 0E1A 2{side(dialect)} {len(frame):04X} ".encode() + frame)
    client.lines_until("OK")
    line = client.readline().split()
    assert line[0] == "ERXUDP"
    if dialect == "bp35c2":  # LQI, SECURED, SIDE, DATALEN, DATA
        assert len(line) == 11 and line[6] == "A7" and line[8] == "0"
    assert el.decode(bytes.fromhex(line[-1])).properties[0].edt == POWER_W.to_bytes(4, "big")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_bad_credentials(
    pty_factory: PtyFactory, meter: WisunMeter, creds: BrouteCredentials, dialect: str
) -> None:
    client = pty_factory(dialect, "001D129000000003")
    wrong = BrouteCredentials(SPID, creds.route_id, "ZZZZZZZZZZZZ", creds.issued_at)
    address, last = scan_and_join(client, dialect, wrong)
    assert last.split()[:3] == ["EVENT", "24", address]
    refusal = meter.sessions.audit[-1]
    assert refusal.action == "refuse" and refusal.reason == "bad credentials"
    # not joined: no sending
    frame = get_e7()
    client.write(f"SKSENDTO 1 {address} 0E1A 1{side(dialect)} {len(frame):04X} ".encode() + frame)
    assert client.lines_until("OK", "FAIL")[-1] == "FAIL ER10"
    # a wrong route ID: the meter does not even answer the scan (pairing ID mismatch)
    client.command("SKSETRBID " + "0" * 32)
    lines = client.command(f"SKSCAN 2 FFFFFFFF 6{side(dialect)}", "EVENT 22")
    assert "EPANDESC" not in lines


@pytest.mark.parametrize("dialect", DIALECTS)
def test_second_device_refused_until_first_leaves(
    pty_factory: PtyFactory, meter: WisunMeter, creds: BrouteCredentials, dialect: str
) -> None:
    first = pty_factory(dialect, "001D129000000004")
    second = pty_factory("bp35a1", "001D129000000005")
    address, last = scan_and_join(first, dialect, creds)
    assert last.startswith("EVENT 25")
    _, last = scan_and_join(second, "bp35a1", creds)
    assert last == f"EVENT 24 {address}"  # Wi-SUN is 1:1 (SPEC B1)
    assert meter.sessions.audit[-1].action == "refuse"
    assert "held by" in meter.sessions.audit[-1].reason
    first.command("SKTERM", "EVENT 27")
    lines = second.command(f"SKJOIN {address}", "EVENT 24", "EVENT 25")
    assert lines[-1] == f"EVENT 25 {address}"
    holders = meter.sessions.active(SPID, Medium.WISUN)
    assert [s.device for s in holders] == [link_local("001D129000000005")]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_lifetime_expiry(
    pty_factory: PtyFactory,
    meter: WisunMeter,
    creds: BrouteCredentials,
    clock: FakeClock,
    dialect: str,
) -> None:
    first = pty_factory(dialect, "001D129000000006", reauthenticate=False)
    address, last = scan_and_join(first, dialect, creds)
    assert last.startswith("EVENT 25")
    first.erxudp(dialect == "bp35a1")
    clock.now += LIFETIME - 1
    time.sleep(0.05)  # several ticks: nothing yet
    assert first.buf == b"" and not select.select([first.fd], [], [], 0)[0]
    clock.now += 2
    assert first.readline() == f"EVENT 29 {address}{side(dialect)}"
    assert [e.action for e in meter.sessions.audit] == ["start", "expire"]
    # the meter is free again: another device joins
    second = pty_factory("bp35a1", "001D129000000007")
    assert scan_and_join(second, "bp35a1", creds)[1] == f"EVENT 25 {address}"


def test_expiry_reauthenticates(
    pty_factory: PtyFactory, meter: WisunMeter, creds: BrouteCredentials, clock: FakeClock
) -> None:
    client = pty_factory("bp35a1", "001D129000000008")
    address, _ = scan_and_join(client, "bp35a1", creds)
    client.erxudp(True)
    clock.now += LIFETIME + 1
    lines = client.lines_until("EVENT 24", "EVENT 25")
    assert lines[0] == f"EVENT 29 {address}"
    assert lines[-1] == f"EVENT 25 {address}"  # the module authenticated again at once
    assert meter.sessions.active(SPID, Medium.WISUN)[0].started_at == clock.now


@pytest.mark.parametrize("dialect", DIALECTS)
def test_command_errors_and_echo(
    pty_factory: PtyFactory, meter: WisunMeter, creds: BrouteCredentials, dialect: str
) -> None:
    client = pty_factory(dialect, "001D129000000009")
    assert client.command("SKFOO") == ["SKFOO", "FAIL ER04"]
    assert client.command("SKVER 1") == ["SKVER 1", "FAIL ER05"]
    assert client.command("SKSREG S2 99")[-1] == "FAIL ER06"
    assert client.command("SKSETRBID 123")[-1] == "FAIL ER06"
    assert client.command("SKSETPWD C SHORT")[-1] == "FAIL ER06"
    assert client.command(f"SKJOIN {meter.ip}")[-1] == "FAIL ER10"  # no ID/password yet
    assert client.command("SKJOIN nowhere")[-1] == "FAIL ER06"
    assert client.command("SKSREG S3 BEEF")[-1] == "OK"
    assert client.command("SKSREG S3") == ["SKSREG S3", "ESREG BEEF", "OK"]
    info = client.command("SKINFO")[1].split()
    assert info[:5] == ["EINFO", link_local("001D129000000009"), "001D129000000009", "21", "BEEF"]
    assert info[5] == ("FFFE" if dialect == "bp35a1" else "0")
    assert client.command("SKSREG SFE 0") == ["SKSREG SFE 0", "OK"]
    assert client.command("SKAPPVER")[0].startswith("EAPPVER ")  # no echo now
    client.write(b"X" * 600 + b"\r\n")
    assert client.readline() == "FAIL ER09"
    assert client.command("SKRESET") == ["OK"]
    assert client.command("SKVER")[0] == "SKVER"  # reset turns echo back on


def test_serve_wisun_issues_credentials(registry: CredentialRegistry) -> None:
    with serve_wisun(MeterStub(), registry, SPID, "bp35c2", session_lifetime=60) as server:
        assert server.device_path.startswith("/dev/")
        assert registry.current(SPID) == server.credentials
        path, _ = server.add_device("bp35a1", "001D1290000000AA")
        client = Client(path, "bp35a1")
        try:
            address, last = scan_and_join(client, "bp35a1", server.credentials)
            assert last == f"EVENT 25 {address}" and address == server.meter.ip
        finally:
            client.close()


def test_access_log(
    pty_factory: PtyFactory, creds: BrouteCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kenshin.broute.access")
    client = pty_factory("bp35a1", "001D12900000000B")
    scan_and_join(client, "bp35a1", creds)
    assert any("session start" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# fuzz: whatever the host sends, a later SKVER is answered

WORDS = [
    "SKVER",
    "SKINFO",
    "SKSREG",
    "SKSCAN",
    "SKJOIN",
    "SKSENDTO",
    "SKTERM",
    "SKLL64",
    "SKSETPWD",
    "SKSETRBID",
    "ROPT",
    "WOPT",
    "SKRESET",
    "S2",
    "S3",
    "SFE",
    "SA2",
    "0",
    "1",
]
TOKENS = st.one_of(st.sampled_from(WORDS), st.text("0123456789ABCDEFSK ", max_size=40))


def fuzz_module() -> SkStackModule:
    registry = CredentialRegistry()
    registry.issue(SPID)
    meter = WisunMeter(MeterStub(), registry, SPID, SessionTable(clock=FakeClock()))
    return SkStackModule(meter, "bp35a1", "001D1290000000FF")


@settings(max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_bytes_then_skver(noise: bytes) -> None:
    module = fuzz_module()
    module.feed(noise)
    module.tick()
    out = module.feed(b"\r\nSKVER\r\n")
    assert out.endswith(b"EVER 1.2.10\r\nOK\r\n")


@settings(max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(TOKENS, min_size=1, max_size=6), max_size=20))
def test_fuzz_lines_then_skver(lines: list[list[str]]) -> None:
    module = fuzz_module()
    for words in lines:
        module.feed(" ".join(words).encode() + b"\r\n")
    out = module.feed(b"SKVER\r\n")
    assert out.endswith(b"EVER 1.2.10\r\nOK\r\n")
