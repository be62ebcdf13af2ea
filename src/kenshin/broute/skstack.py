"""A virtual Wi-SUN B-route module speaking SKSTACK IP, sans-I/O (SPEC B1, B2, B4, X5).

B-route client programs drive a USB Wi-SUN module (ROHM BP35A1, BP35C2, ...) with the SKSTACK IP
text command set over a serial line. :class:`SkStackModule` emulates such a module without I/O:
:meth:`SkStackModule.feed` takes the bytes the host wrote and returns the bytes the module
prints; :meth:`SkStackModule.tick` returns what happens with time (EVENT 29, session lifetime
over). On the radio side it reaches one :class:`WisunMeter`: the meter's ECHONET Lite endpoint,
its B-route credentials (B4) and the :class:`~kenshin.broute.credentials.SessionTable` that keeps
Wi-SUN 1:1 (B1, B2). :mod:`kenshin.broute.wisun` puts a module on a pty.

Two dialects: ``bp35a1`` (single-stack: 9-field ERXUDP, no SIDE arguments) and ``bp35c2``
(dual-stack: SIDE in SKSCAN/SKSENDTO/EINFO/EVENT/EPANDESC, ERXUDP with LQI (when SA2=1) and SIDE).
``docs/protocols/wisun.md`` describes the behaviour.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from kenshin.broute.credentials import CredentialRegistry, Medium, Session, SessionTable
from kenshin.errors import InvalidSetting

# one logger for the Wi-SUN link: this module and its pty (kenshin.broute.wisun)
log = logging.getLogger("kenshin.broute.wisun")

CRLF = b"\r\n"
ECHONET_PORT = 0x0E1A  # 3610
MAX_UDP_DATA = 0x4D0  # 1232 bytes: the largest SKSENDTO payload
MAX_LINE = 512  # a longer command line is a UART input error (ER09)
CHANNELS = range(0x21, 0x3D)  # 920 MHz band channels 33-60
B_ROUTE_SIDE = 0  # dual-stack modules: SIDE 0 is the B-route, 1 the HAN
MULTICAST_ALL_NODES = "FF02:0000:0000:0000:0000:0000:0000:0001"

# SKSTACK IP event numbers
EV_NA_RECEIVED = 0x02
EV_BEACON = 0x20
EV_UDP_SENT = 0x21
EV_SCAN_DONE = 0x22
EV_PANA_FAILED = 0x24
EV_PANA_OK = 0x25
EV_SESSION_ENDED = 0x27
EV_TERM_TIMEOUT = 0x28
EV_LIFETIME_EXPIRED = 0x29


class EchonetEndpoint(Protocol):
    """The meter's ECHONET Lite side, e.g. ``kenshin.broute.node.MeterNode``."""

    def handle(self, data: bytes, source: str) -> list[bytes]:
        """Reply datagrams to one received datagram from IPv6 address ``source``."""
        ...

    def announcement(self) -> bytes:
        """The node profile's instance-list notification (0xD5 INF)."""
        ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    version: str  # SKVER
    app_version: str  # SKAPPVER
    dual_stack: bool  # SIDE parameters and fields
    hex_data: bool  # ERXUDP data as ASCII hex by default (WOPT 01)


DIALECTS: dict[str, Dialect] = {
    "bp35a1": Dialect("bp35a1", "1.2.10", "rev26e", dual_stack=False, hex_data=True),
    "bp35c2": Dialect("bp35c2", "1.4.2", "rev31d", dual_stack=True, hex_data=False),
}


# ---------------------------------------------------------------------------------------------
# addresses


def format_ipv6(address: str | ipaddress.IPv6Address) -> str:
    """SKSTACK's IPv6 form: eight 4-digit upper-case groups, e.g. ``FE80:0000:...:5678``."""
    return ipaddress.IPv6Address(address).exploded.upper()


def link_local(mac: str) -> str:
    """SKLL64: the link-local IPv6 address of a 64-bit MAC (U/L bit flipped, RFC 4291)."""
    raw = bytearray(bytes.fromhex(mac))
    if len(raw) != 8:
        raise ValueError("a MAC address is 16 hex digits")
    raw[0] ^= 0x02
    return format_ipv6(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes(raw)))


def _is_hex(token: str, digits: int | None = None) -> bool:
    if not token or (digits is not None and len(token) != digits):
        return False
    return all(c in "0123456789ABCDEFabcdef" for c in token)


def _parse_ipv6(token: str) -> str | None:
    try:
        return format_ipv6(token)
    except ValueError:
        return None


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


# ---------------------------------------------------------------------------------------------
# the meter side


@dataclass
class WisunMeter:
    """The meter's end of the radio link, shared by every virtual module that can hear it."""

    endpoint: EchonetEndpoint
    registry: CredentialRegistry
    supply_point_id: str
    sessions: SessionTable = field(default_factory=SessionTable)
    mac: str = ""  # 16 hex digits; derived from the supply point id when empty
    channel: int = 0  # 0x21-0x3C; derived when 0
    pan_id: int = -1  # derived when -1
    lqi: int = 0xA7
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        seed = _digest(f"wisun-meter:{self.supply_point_id}")
        if not self.mac:
            self.mac = (b"\x00\x1d\x12\x91" + seed[:4]).hex().upper()
        if not _is_hex(self.mac, 16):
            raise InvalidSetting(f"meter MAC must be 16 hex digits, got {self.mac!r}")
        self.mac = self.mac.upper()
        if not self.channel:
            self.channel = CHANNELS[seed[4] % len(CHANNELS)]
        if self.channel not in CHANNELS:
            raise InvalidSetting(f"Wi-SUN channel must be 0x21-0x3C, got {self.channel:#x}")
        if self.pan_id < 0:
            self.pan_id = int.from_bytes(seed[5:7], "big") % 0xFFFE
        if not 0 <= self.pan_id <= 0xFFFE or not 0 <= self.lqi <= 0xFF:
            raise InvalidSetting("PAN ID must be 0000-FFFE and LQI 00-FF")

    @property
    def ip(self) -> str:
        return link_local(self.mac)

    def hears_pairing_id(self, pairing_id: str) -> bool:
        """A B-route meter answers an active scan only with its own pairing ID (B4)."""
        return self.registry.matches_pairing_id(self.supply_point_id, pairing_id)

    def handle(self, data: bytes, source: str) -> list[bytes]:
        with self.lock:
            try:
                return list(self.endpoint.handle(data, source))
            except Exception:  # the radio link must survive a faulty endpoint
                log.exception("meter %s: endpoint failed on a datagram", self.supply_point_id)
                return []

    def announcement(self) -> bytes | None:
        with self.lock:
            try:
                return self.endpoint.announcement()
            except Exception:
                log.exception("meter %s: no instance-list announcement", self.supply_point_id)
                return None


# ---------------------------------------------------------------------------------------------
# the module


class _Fail(Exception):
    """A command answered ``FAIL ERxx``."""

    def __init__(self, code: int):
        super().__init__(f"ER{code:02d}")
        self.code = code


ER_UNSUPPORTED = 4  # command not supported
ER_ARG_COUNT = 5  # wrong number of arguments
ER_FORMAT = 6  # bad format or out of range
ER_UART = 9  # UART input error
ER_EXEC = 10  # accepted but failed


@dataclass
class _SendTo:
    echo: str
    handle: int
    dest: str
    port: int
    sec: int
    length: int
    data: bytearray = field(default_factory=bytearray)


_module_numbers = itertools.count(1)
_A = TypeVar("_A")


class SkStackModule:
    """A virtual SKSTACK IP module (sans-I/O): bytes from the host in, bytes to the host out.

    ``reauthenticate``: after EVENT 29 (lifetime over) the module tries PANA again at once, as
    real modules do, and prints EVENT 25 or EVENT 24.
    """

    def __init__(
        self,
        meter: WisunMeter,
        dialect: str = "bp35a1",
        mac: str | None = None,
        reauthenticate: bool = True,
    ):
        if dialect not in DIALECTS:
            raise InvalidSetting(f"dialect must be one of {sorted(DIALECTS)}, got {dialect!r}")
        self.meter = meter
        self.dialect = DIALECTS[dialect]
        if mac is None:
            mac = f"001D1290{next(_module_numbers):08X}"
        if not _is_hex(mac, 16):
            raise InvalidSetting(f"module MAC must be 16 hex digits, got {mac!r}")
        self.mac = mac.upper()
        self.ip = link_local(self.mac)
        self.reauthenticate = reauthenticate
        self.hex_data = self.dialect.hex_data  # kept in flash: SKRESET leaves it
        self.session: Session | None = None
        self._buf = bytearray()
        self._overflow = False
        self._sendto: _SendTo | None = None
        self._out = bytearray()
        self._commands: dict[str, Callable[[list[str]], None]] = {
            "SKVER": self._skver,
            "SKAPPVER": self._skappver,
            "SKINFO": self._skinfo,
            "SKRESET": self._skreset,
            "SKSREG": self._sksreg,
            "SKSETPWD": self._sksetpwd,
            "SKSETRBID": self._sksetrbid,
            "SKSCAN": self._skscan,
            "SKLL64": self._skll64,
            "SKJOIN": self._skjoin,
            "SKSENDTO": self._sksendto_bad,
            "SKTERM": self._skterm,
            "ROPT": self._ropt,
            "WOPT": self._wopt,
        }
        self._reset_registers()

    def _reset_registers(self) -> None:
        self.echo = True  # SFE
        self.show_rssi = False  # SA2
        self.channel = CHANNELS[0]  # S2
        self.pan_id = 0xFFFF  # S3
        self.route_id: str | None = None
        self.password: str | None = None

    # ----- byte stream

    def feed(self, data: bytes) -> bytes:
        """Process bytes written by the host; returns what the module prints."""
        i = 0
        while i < len(data):
            pending = self._sendto
            if pending is not None:  # raw payload of SKSENDTO: exactly `length` bytes
                take = data[i : i + pending.length - len(pending.data)]
                pending.data += take
                i += len(take)
                if len(pending.data) == pending.length:
                    self._sendto = None
                    self._run(self._do_sendto, pending)
                continue
            byte = data[i]
            i += 1
            if byte in b"\r\n":
                if self._overflow:
                    self._overflow = False
                elif self._buf:
                    line = self._buf.decode("latin-1")
                    self._buf.clear()
                    self._line(line)
                continue
            if self._overflow:
                continue
            self._buf.append(byte)
            if len(self._buf) > MAX_LINE:
                self._buf.clear()
                self._overflow = True
                self._print(f"FAIL ER{ER_UART:02d}")
            elif byte == 0x20 and self._buf.startswith(b"SKSENDTO "):
                self._maybe_sendto_header()
        return self._take()

    def tick(self) -> bytes:
        """Time passes: report a session whose lifetime ran out (EVENT 29)."""
        session = self.session
        if session is not None and not self.meter.sessions.is_live(session):
            self.session = None
            log.info("module %s: PANA session lifetime over", self.mac)
            self._event(EV_LIFETIME_EXPIRED, self.meter.ip)
            if self.reauthenticate:
                self._authenticate()
        return self._take()

    def _take(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _print(self, line: str | bytes, end: bytes = CRLF) -> None:
        self._out += (line.encode("latin-1") if isinstance(line, str) else line) + end

    def _event(self, number: int, address: str, param: int | None = None) -> None:
        parts = ["EVENT", f"{number:02X}", address]
        if self.dialect.dual_stack:
            parts.append(str(B_ROUTE_SIDE))
        if param is not None:
            parts.append(f"{param:02X}")
        self._print(" ".join(parts))

    def _line(self, line: str) -> None:
        if self.echo:
            self._print(line)
        words = line.split()
        if not words:
            return
        command = self._commands.get(words[0])
        if command is None:
            self._print(f"FAIL ER{ER_UNSUPPORTED:02d}")
            return
        self._run(command, words[1:])

    def _run(self, action: Callable[[_A], None], argument: _A) -> None:
        try:
            action(argument)
        except _Fail as fail:
            self._print(f"FAIL ER{fail.code:02d}")

    # ----- information and settings

    def _no_args(self, args: list[str]) -> None:
        if args:
            raise _Fail(ER_ARG_COUNT)

    def _skver(self, args: list[str]) -> None:
        self._no_args(args)
        self._print(f"EVER {self.dialect.version}")
        self._print("OK")

    def _skappver(self, args: list[str]) -> None:
        self._no_args(args)
        self._print(f"EAPPVER {self.dialect.app_version}")
        self._print("OK")

    def _skinfo(self, args: list[str]) -> None:
        self._no_args(args)
        last = str(B_ROUTE_SIDE) if self.dialect.dual_stack else "FFFE"  # SIDE or ADDR16
        self._print(f"EINFO {self.ip} {self.mac} {self.channel:02X} {self.pan_id:04X} {last}")
        self._print("OK")

    def _skreset(self, args: list[str]) -> None:
        self._no_args(args)
        self._leave("module reset")
        self._reset_registers()
        self._print("OK")

    def _sksreg(self, args: list[str]) -> None:
        if len(args) not in (1, 2):
            raise _Fail(ER_ARG_COUNT)
        register = args[0].upper()
        readers: dict[str, Callable[[], str]] = {
            "S1": lambda: self.mac,
            "S2": lambda: f"{self.channel:02X}",
            "S3": lambda: f"{self.pan_id:04X}",
            "SA2": lambda: str(int(self.show_rssi)),
            "SFE": lambda: str(int(self.echo)),
        }
        if register not in readers:
            raise _Fail(ER_FORMAT)
        if len(args) == 1:
            self._print(f"ESREG {readers[register]()}")
            self._print("OK")
            return
        value = args[1]
        if not _is_hex(value):
            raise _Fail(ER_FORMAT)
        number = int(value, 16)
        if register == "S1":
            raise _Fail(ER_EXEC)  # read-only here
        if register == "S2":
            if number not in CHANNELS:
                raise _Fail(ER_FORMAT)
            self.channel = number
        elif register == "S3":
            if len(value) > 4:
                raise _Fail(ER_FORMAT)
            self.pan_id = number
        else:
            if number not in (0, 1):
                raise _Fail(ER_FORMAT)
            if register == "SA2":
                self.show_rssi = bool(number)
            else:
                self.echo = bool(number)
        self._print("OK")

    def _sksetpwd(self, args: list[str]) -> None:
        if len(args) != 2:
            raise _Fail(ER_ARG_COUNT)
        length, password = args
        if not _is_hex(length, None) or not 1 <= int(length, 16) <= 32:
            raise _Fail(ER_FORMAT)
        if len(password) != int(length, 16):
            raise _Fail(ER_FORMAT)
        self.password = password
        self._print("OK")

    def _sksetrbid(self, args: list[str]) -> None:
        if len(args) != 1:
            raise _Fail(ER_ARG_COUNT)
        if len(args[0]) != 32:
            raise _Fail(ER_FORMAT)
        self.route_id = args[0]
        self._print("OK")

    def _ropt(self, args: list[str]) -> None:
        self._no_args(args)
        self._print(f"OK {int(self.hex_data):02d}", end=b"\r")  # CR only, as the real ones

    def _wopt(self, args: list[str]) -> None:
        if len(args) != 1:
            raise _Fail(ER_ARG_COUNT)
        if args[0] not in ("00", "01"):
            raise _Fail(ER_FORMAT)
        self.hex_data = args[0] == "01"
        self._print("OK", end=b"\r")

    def _skll64(self, args: list[str]) -> None:
        if len(args) != 1:
            raise _Fail(ER_ARG_COUNT)
        if not _is_hex(args[0], 16):
            raise _Fail(ER_FORMAT)
        self._print(link_local(args[0]))  # a bare line, no OK

    # ----- scan, join, leave

    def _side_arg(self, args: list[str], fixed: int) -> int:
        """Check the argument count and return SIDE (dual-stack: optional last argument)."""
        if len(args) == fixed:
            return B_ROUTE_SIDE
        if self.dialect.dual_stack and len(args) == fixed + 1:
            if args[-1] not in ("0", "1"):
                raise _Fail(ER_FORMAT)
            return int(args[-1])
        raise _Fail(ER_ARG_COUNT)

    def _skscan(self, args: list[str]) -> None:
        side = self._side_arg(args, 3)
        mode, mask, duration = args[:3]
        if mode not in ("2", "3") or not _is_hex(mask, 8) or not _is_hex(duration):
            raise _Fail(ER_FORMAT)
        if int(duration, 16) > 14:
            raise _Fail(ER_FORMAT)
        self._print("OK")
        meter = self.meter
        in_mask = (int(mask, 16) >> (meter.channel - CHANNELS[0])) & 1
        # mode 2 carries the pairing ID (last 8 characters of SKSETRBID): only that meter answers
        pairing_id = self.route_id[-8:] if self.route_id else ""
        found = (
            side == B_ROUTE_SIDE and in_mask and (mode == "3" or meter.hears_pairing_id(pairing_id))
        )
        if found:
            self._event(EV_BEACON, meter.ip)
            self._print("EPANDESC")
            self._print(f"  Channel:{meter.channel:02X}")
            self._print("  Channel Page:09")
            self._print(f"  Pan ID:{meter.pan_id:04X}")
            self._print(f"  Addr:{meter.mac}")
            self._print(f"  LQI:{meter.lqi:02X}")
            if self.dialect.dual_stack:
                self._print(f"  Side:{B_ROUTE_SIDE}")
            if mode == "2":
                self._print(f"  PairID:{pairing_id}")
        self._event(EV_SCAN_DONE, self.ip)

    def _skjoin(self, args: list[str]) -> None:
        if len(args) != 1:
            raise _Fail(ER_ARG_COUNT)
        target = _parse_ipv6(args[0])
        if target is None:
            raise _Fail(ER_FORMAT)
        if self.route_id is None or self.password is None or self.session is not None:
            raise _Fail(ER_EXEC)
        self._print("OK")
        meter = self.meter
        if target != meter.ip or self.channel != meter.channel or self.pan_id != meter.pan_id:
            log.info("module %s: PANA to %s got no answer", self.mac, target)
            self._event(EV_PANA_FAILED, target)  # nobody answered the PANA start
            return
        if self._authenticate() and (inf := meter.announcement()) is not None:
            self._erxudp(MULTICAST_ALL_NODES, inf)

    def _authenticate(self) -> bool:
        """PANA with the meter: EVENT 25 and a session, or EVENT 24 (B4, B1 1:1 rule)."""
        meter = self.meter
        self._event(EV_UDP_SENT, meter.ip, 0)
        decision = meter.sessions.authenticate(
            meter.registry,
            meter.supply_point_id,
            Medium.WISUN,
            self.ip,
            self.route_id or "",
            self.password or "",
        )
        if not decision.granted:
            self._event(EV_PANA_FAILED, meter.ip)
            return False
        self.session = decision.session
        self._event(EV_NA_RECEIVED, meter.ip)
        self._event(EV_PANA_OK, meter.ip)
        return True

    def _leave(self, reason: str) -> bool:
        session, self.session = self.session, None
        return session is not None and self.meter.sessions.end(session, reason)

    def _skterm(self, args: list[str]) -> None:
        self._no_args(args)
        if self.session is None:
            raise _Fail(ER_EXEC)
        ended = self._leave("SKTERM")
        self._print("OK")
        self._event(EV_SESSION_ENDED if ended else EV_TERM_TIMEOUT, self.meter.ip)

    # ----- UDP

    def _maybe_sendto_header(self) -> None:
        """At a space after ``SKSENDTO ...``: if the header is complete, the payload follows."""
        header = self._buf[:-1].decode("latin-1")
        args = header.split(" ")[1:]
        fields = 6 if self.dialect.dual_stack else 5
        if len(args) != fields or not _is_hex(args[-1], 4):
            return
        handle, dest, port, sec = args[:4]
        dest_ip = _parse_ipv6(dest)
        if (
            handle not in ("1", "2", "3", "4", "5", "6")
            or dest_ip is None
            or not _is_hex(port, 4)
            or sec not in ("0", "1", "2")
            or (self.dialect.dual_stack and args[4] != str(B_ROUTE_SIDE))
        ):
            return  # not a header we accept: the line ends in FAIL
        self._buf.clear()
        pending = _SendTo(header, int(handle), dest_ip, int(port, 16), int(sec), int(args[-1], 16))
        if self.echo:
            self._print(header)
        self._sendto = pending
        if pending.length == 0:
            self._sendto = None
            self._run(self._do_sendto, pending)

    def _sksendto_bad(self, args: list[str]) -> None:
        """A SKSENDTO line that never became a header (see :meth:`_maybe_sendto_header`)."""
        raise _Fail(
            ER_FORMAT if len(args) >= (6 if self.dialect.dual_stack else 5) else ER_ARG_COUNT
        )

    def _do_sendto(self, send: _SendTo) -> None:
        if send.length == 0 or send.length > MAX_UDP_DATA:
            raise _Fail(ER_FORMAT)
        if self.session is None or not self.meter.sessions.is_live(self.session):
            raise _Fail(ER_EXEC)  # no PANA session, no keys
        meter = self.meter
        data = bytes(send.data)
        if send.dest != meter.ip:
            self._event(EV_UDP_SENT, send.dest, 1)  # nobody there
            self._print("OK")
            return
        self._event(EV_UDP_SENT, send.dest, 0)
        self._print("OK")
        log.debug("module %s -> meter %s: %s", self.ip, meter.supply_point_id, data.hex())
        if send.port != ECHONET_PORT or send.sec == 0:
            return  # the meter listens on 3610 and takes only encrypted frames
        for reply in meter.handle(data, self.ip):
            self._erxudp(self.ip, reply)

    def _erxudp(self, dest: str, data: bytes) -> None:
        meter = self.meter
        fields = ["ERXUDP", meter.ip, dest, f"{ECHONET_PORT:04X}", f"{ECHONET_PORT:04X}", meter.mac]
        if self.dialect.dual_stack:
            if self.show_rssi:
                fields.append(f"{meter.lqi:02X}")
            fields += ["1", str(B_ROUTE_SIDE)]
        else:
            fields.append("1")
        fields.append(f"{len(data):04X}")
        log.debug("meter %s -> module %s: %s", meter.supply_point_id, self.ip, data.hex())
        payload = data.hex().upper().encode() if self.hex_data else data
        self._print(" ".join(fields).encode("latin-1") + b" " + payload)
