"""ECHONET Lite frames and property maps: a sans-I/O codec (SPEC B1–B2).

Only the *specified message format* (EHD2 = 0x81, "format 1") is handled; every field is
big-endian::

    EHD1  EHD2  TID     SEOJ  DEOJ  ESV  OPC  { EPC  PDC  EDT[PDC] } × OPC
    0x10  0x81  u16     3 B   3 B   u8   u8     u8   u8

An EOJ is class group, class, instance; instance 0x00 in a DEOJ addresses every instance of the
class. SetGet (0x6E) and its replies (0x7E, 0x5E) carry two lists: OPCSet and the Set
properties, then OPCGet and the Get properties.

:func:`decode` refuses the *arbitrary message format* (EHD2 = 0x82): its payload has no defined
structure, and a meter may ignore it. Decoding is strict: every byte must be accounted for, and
anything else is an :class:`~kenshin.errors.EchonetError` naming the offending field and offset.
No other exception escapes :func:`decode` or :func:`decode_property_map`, whatever the input.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from kenshin.errors import EchonetError

EHD1 = 0x10  # ECHONET Lite
EHD2_SPECIFIED = 0x81  # format 1: the specified message format
EHD2_ARBITRARY = 0x82  # format 2: not supported
HEADER_BYTES = 12  # EHD1 EHD2 TID(2) SEOJ(3) DEOJ(3) ESV OPC
MAX_TID = 0xFFFF
MAX_PDC = 0xFF
MAX_OPC = 0xFF
UDP_PORT = 3610  # 0x0E1A

# property maps (EPC 0x9D, 0x9E, 0x9F)
EPC_ANNOUNCE_MAP = 0x9D
EPC_SET_MAP = 0x9E
EPC_GET_MAP = 0x9F
MIN_MAP_EPC = 0x80
MAX_MAP_EPC = 0xFF
BITMAP_THRESHOLD = 16  # this many EPCs or more: bitmap form
BITMAP_BYTES = 16


class ESV(IntEnum):
    """ECHONET Lite service codes (SPEC B1).

    0x6x are requests, 0x7x replies and notifications, 0x5x "service not available" (SNA)
    replies to a request that failed in whole or in part.
    """

    SETI = 0x60  # Set, no reply wanted (only a failure is answered)
    SETC = 0x61  # Set, reply wanted
    GET = 0x62
    INF_REQ = 0x63  # ask for a notification
    SETGET = 0x6E
    SET_RES = 0x71
    GET_RES = 0x72
    INF = 0x73  # notification (spontaneous, or the answer to INF_REQ)
    INFC = 0x74  # notification that wants an acknowledgement
    INFC_RES = 0x7A
    SETGET_RES = 0x7E
    SETI_SNA = 0x50
    SETC_SNA = 0x51
    GET_SNA = 0x52
    INF_SNA = 0x53
    SETGET_SNA = 0x5E

    @property
    def is_request(self) -> bool:
        """True for the requests a controller sends (SetI, SetC, Get, INF_REQ, SetGet)."""
        return 0x60 <= self <= 0x6F

    @property
    def is_sna(self) -> bool:
        """True for the failure replies (0x50–0x5F)."""
        return 0x50 <= self <= 0x5F

    @property
    def has_set_get_lists(self) -> bool:
        """True for SetGet and its replies, which carry a Set list and a Get list."""
        return self in _SETGET_FAMILY

    def response_of(self, success: bool = True) -> ESV | None:
        """The reply to this service, or ``None`` if no reply is sent.

        ``Get`` → ``Get_Res`` (success) / ``Get_SNA`` (failure); ``SetI`` is answered only on
        failure (``SetI_SNA``); ``INFC`` is acknowledged with ``INFC_Res`` and has no failure
        reply; replies and plain ``INF`` are never answered.
        """
        return (_SUCCESS_REPLY if success else _FAILURE_REPLY).get(self)


_SETGET_FAMILY = frozenset({ESV.SETGET, ESV.SETGET_RES, ESV.SETGET_SNA})
_SUCCESS_REPLY: dict[ESV, ESV] = {
    ESV.SETC: ESV.SET_RES,
    ESV.GET: ESV.GET_RES,
    ESV.INF_REQ: ESV.INF,
    ESV.SETGET: ESV.SETGET_RES,
    ESV.INFC: ESV.INFC_RES,
}
_FAILURE_REPLY: dict[ESV, ESV] = {
    ESV.SETI: ESV.SETI_SNA,
    ESV.SETC: ESV.SETC_SNA,
    ESV.GET: ESV.GET_SNA,
    ESV.INF_REQ: ESV.INF_SNA,
    ESV.SETGET: ESV.SETGET_SNA,
}
_ESV_BY_CODE: dict[int, ESV] = {int(e): e for e in ESV}


@dataclass(frozen=True, slots=True)
class EOJ:
    """An ECHONET object: class group code, class code, instance code (3 bytes on the wire)."""

    class_group: int
    class_code: int
    instance: int

    def __post_init__(self) -> None:
        for name in ("class_group", "class_code", "instance"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFF:
                raise EchonetError(f"EOJ {name} must be a byte, got {value!r}")

    @classmethod
    def from_int(cls, value: int) -> EOJ:
        """``EOJ.from_int(0x028801)`` → class group 0x02, class 0x88, instance 0x01."""
        if not 0 <= value <= 0xFFFFFF:
            raise EchonetError(f"an EOJ is 3 bytes, got {value:#x}")
        return cls(value >> 16, (value >> 8) & 0xFF, value & 0xFF)

    def __int__(self) -> int:
        return (self.class_group << 16) | (self.class_code << 8) | self.instance

    def __bytes__(self) -> bytes:
        return bytes((self.class_group, self.class_code, self.instance))

    @property
    def class_id(self) -> int:
        """Class group and class as one 16-bit code, e.g. 0x0288."""
        return (self.class_group << 8) | self.class_code

    def __str__(self) -> str:
        return f"{int(self):06X}"

    @classmethod
    def node_profile(cls, instance: int = 0x01) -> EOJ:
        """Node profile 0x0EF0 (instance 0x01 general, 0x02 transmission-only)."""
        return cls(0x0E, 0xF0, instance)

    @classmethod
    def lv_smart_meter(cls, instance: int = 0x01) -> EOJ:
        """Low-voltage smart electric energy meter, class 0x0288."""
        return cls(0x02, 0x88, instance)

    @classmethod
    def hv_smart_meter(cls, instance: int = 0x01) -> EOJ:
        """High-voltage smart electric energy meter, class 0x028A."""
        return cls(0x02, 0x8A, instance)

    @classmethod
    def controller(cls, instance: int = 0x01) -> EOJ:
        """Controller, class 0x05FF: what B-route clients usually put in SEOJ."""
        return cls(0x05, 0xFF, instance)


NODE_PROFILE = EOJ.node_profile()
LV_SMART_METER = EOJ.lv_smart_meter()
HV_SMART_METER = EOJ.hv_smart_meter()
CONTROLLER = EOJ.controller()


@dataclass(frozen=True, slots=True)
class Property:
    """One property: EPC and its data EDT; PDC (the EDT length, 0–255) is implied.

    An empty EDT is a Get request's "give me this", a Set_Res's "accepted", a Get_SNA's
    "not available".
    """

    epc: int
    edt: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.epc, int) or not 0 <= self.epc <= 0xFF:
            raise EchonetError(f"EPC must be a byte, got {self.epc!r}")
        if not isinstance(self.edt, bytes):
            raise EchonetError(f"EDT of EPC {self.epc:#04x} must be bytes")
        if len(self.edt) > MAX_PDC:
            raise EchonetError(
                f"EDT of EPC {self.epc:#04x} is {len(self.edt)} bytes, PDC allows {MAX_PDC}"
            )

    @property
    def pdc(self) -> int:
        return len(self.edt)


@dataclass(frozen=True, slots=True)
class Frame:
    """One ECHONET Lite frame in the specified message format (SPEC B1).

    ``properties`` is the one list of most services, or the *Get* list of SetGet, SetGet_Res
    and SetGet_SNA; ``set_properties`` is their *Set* list, which goes first on the wire. Other
    services must leave ``set_properties`` empty.
    """

    tid: int
    seoj: EOJ
    deoj: EOJ
    esv: ESV
    properties: tuple[Property, ...] = ()
    set_properties: tuple[Property, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.tid, int) or not 0 <= self.tid <= MAX_TID:
            raise EchonetError(f"TID must be 0–{MAX_TID:#x}, got {self.tid!r}")
        if not isinstance(self.esv, ESV):
            raise EchonetError(f"ESV must be an ESV, got {self.esv!r}")
        if self.set_properties and not self.esv.has_set_get_lists:
            raise EchonetError(f"{self.esv.name} carries one property list, not a Set list")
        for name in ("properties", "set_properties"):
            props = getattr(self, name)
            if len(props) > MAX_OPC:
                raise EchonetError(f"{len(props)} {name}: OPC allows at most {MAX_OPC}")

    def reply(
        self,
        esv: ESV,
        properties: Iterable[Property] = (),
        set_properties: Iterable[Property] = (),
    ) -> Frame:
        """A frame answering this one: same TID, SEOJ and DEOJ swapped."""
        return Frame(self.tid, self.deoj, self.seoj, esv, tuple(properties), tuple(set_properties))


# ---------------------------------------------------------------------------------------------
# frames


def _pack_list(out: bytearray, props: tuple[Property, ...]) -> None:
    out.append(len(props))
    for prop in props:
        out.append(prop.epc)
        out.append(len(prop.edt))
        out += prop.edt


def encode(frame: Frame) -> bytes:
    """The bytes of ``frame`` (SPEC B1). Validation happened when the frame was built."""
    out = bytearray((EHD1, EHD2_SPECIFIED, frame.tid >> 8, frame.tid & 0xFF))
    out += bytes(frame.seoj)
    out += bytes(frame.deoj)
    out.append(frame.esv)
    if frame.esv.has_set_get_lists:
        _pack_list(out, frame.set_properties)
    _pack_list(out, frame.properties)
    return bytes(out)


def _unpack_list(data: bytes, pos: int, what: str) -> tuple[tuple[Property, ...], int]:
    if pos >= len(data):
        raise EchonetError(f"frame ends at byte {pos} where {what} was expected")
    opc = data[pos]
    pos += 1
    props: list[Property] = []
    for k in range(opc):
        if pos + 2 > len(data):
            raise EchonetError(
                f"{what} says {opc} properties, but the frame ends after {k} (at byte {pos})"
            )
        epc, pdc = data[pos], data[pos + 1]
        pos += 2
        if pos + pdc > len(data):
            raise EchonetError(
                f"PDC {pdc} of EPC {epc:#04x} at byte {pos - 1} overruns the frame "
                f"({len(data) - pos} bytes left)"
            )
        props.append(Property(epc, data[pos : pos + pdc]))
        pos += pdc
    return tuple(props), pos


def decode(data: bytes) -> Frame:
    """Parse one ECHONET Lite frame (SPEC B1); :class:`EchonetError` says what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EchonetError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise EchonetError(
            f"frame is {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header"
        )
    if data[0] != EHD1:
        raise EchonetError(f"EHD1 is {data[0]:#04x}, ECHONET Lite is {EHD1:#04x}")
    if data[1] == EHD2_ARBITRARY:
        raise EchonetError("EHD2 0x82 (arbitrary message format) is not supported")
    if data[1] != EHD2_SPECIFIED:
        raise EchonetError(f"EHD2 is {data[1]:#04x}, expected {EHD2_SPECIFIED:#04x}")
    tid = (data[2] << 8) | data[3]
    seoj = EOJ(data[4], data[5], data[6])
    deoj = EOJ(data[7], data[8], data[9])
    esv = _ESV_BY_CODE.get(data[10])
    if esv is None:
        raise EchonetError(f"unknown ESV {data[10]:#04x}")
    set_props: tuple[Property, ...] = ()
    pos = 11
    if esv.has_set_get_lists:
        set_props, pos = _unpack_list(data, pos, "OPCSet")
        props, pos = _unpack_list(data, pos, "OPCGet")
    else:
        props, pos = _unpack_list(data, pos, "OPC")
    if pos != len(data):
        raise EchonetError(f"{len(data) - pos} trailing bytes after the last property")
    return Frame(tid, seoj, deoj, esv, props, set_props)


# ---------------------------------------------------------------------------------------------
# property maps


def encode_property_map(epcs: Iterable[int]) -> bytes:
    """The EDT of a property map (EPC 0x9D/0x9E/0x9F, SPEC B2).

    Byte 0 is the number N of properties. With N < 16 the N EPCs follow, one byte each, in
    ascending order. With N ≥ 16 a 16-byte bitmap follows: bit ``b`` (0 = least significant)
    of bitmap byte ``i`` (0–15, i.e. EDT byte ``1 + i``) is set when EPC
    ``0x80 + 0x10*b + i`` is present — the byte index is the EPC's low nibble and the bit
    index is its high nibble minus 8. Only EPCs 0x80–0xFF can be listed; duplicates count once.
    """
    unique = set()
    for epc in epcs:
        if not isinstance(epc, int) or not MIN_MAP_EPC <= epc <= MAX_MAP_EPC:
            raise EchonetError(f"a property map holds EPCs 0x80–0xFF, got {epc!r}")
        unique.add(epc)
    ordered = sorted(unique)
    if len(ordered) < BITMAP_THRESHOLD:
        return bytes((len(ordered), *ordered))
    bitmap = bytearray(BITMAP_BYTES)
    for epc in ordered:
        bitmap[epc & 0x0F] |= 1 << ((epc >> 4) - 8)
    return bytes((len(ordered),)) + bytes(bitmap)


def decode_property_map(edt: bytes) -> frozenset[int]:
    """The EPCs of a property map EDT (SPEC B2); the layout is in :func:`encode_property_map`.

    Strict: the EDT length must match its form, list EPCs must be 0x80–0xFF and distinct, and
    the count byte must equal the number of EPCs listed or of bits set.
    """
    if not isinstance(edt, bytes | bytearray | memoryview):
        raise EchonetError(f"expected bytes, got {type(edt).__name__}")
    edt = bytes(edt)
    if not edt:
        raise EchonetError("empty property map")
    count = edt[0]
    if count < BITMAP_THRESHOLD:
        if len(edt) != 1 + count:
            raise EchonetError(
                f"property map lists {count} EPCs, so it is {1 + count} bytes, not {len(edt)}"
            )
        epcs = frozenset(edt[1:])
        if len(epcs) != count:
            raise EchonetError("property map lists an EPC twice")
        bad = [e for e in epcs if e < MIN_MAP_EPC]
        if bad:
            raise EchonetError(f"property map lists EPC {min(bad):#04x}, outside 0x80–0xFF")
        return epcs
    if len(edt) != 1 + BITMAP_BYTES:
        raise EchonetError(
            f"property map of {count} EPCs is a bitmap of {1 + BITMAP_BYTES} bytes, not {len(edt)}"
        )
    found = frozenset(
        0x80 + 0x10 * bit + i
        for i, byte in enumerate(edt[1:])
        for bit in range(8)
        if byte >> bit & 1
    )
    if len(found) != count:
        raise EchonetError(f"property map count is {count} but its bitmap has {len(found)} bits")
    return found
