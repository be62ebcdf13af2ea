"""A sans-I/O ECHONET Lite node for one simulated smart meter (SPEC B1–B3, M1, M2).

A :class:`MeterNode` holds the node profile 0x0EF001 and one meter object: 0x028801 for a
low-voltage meter (SPEC B1), 0x028A01 for a high-voltage one (SPEC B2). :meth:`MeterNode.handle`
takes one received datagram and returns the reply frames; it never raises, whatever the bytes.

Addressing: a request is answered when its DEOJ is one of the node's objects, or instance 0x00
of one of their classes (every instance of the class); the reply's SEOJ is the real object. Any
other DEOJ, every reply or notification, and the arbitrary message format (EHD2 0x82) are
ignored.

Services (SPEC B1): Get → Get_Res / Get_SNA; SetC → Set_Res / SetC_SNA; SetI → nothing /
SetI_SNA; INF_REQ → INF / INF_SNA; SetGet → SetGet_Res / SetGet_SNA; INFC → INFC_Res. In an SNA
reply, a failed Get property has PDC 0 and a readable one its value; a Set reply lists an
accepted property with PDC 0 and echoes the EDT of a rejected one. The TID is echoed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kenshin.broute.echonet import EOJ, ESV, Frame, Property, decode, encode
from kenshin.broute.objects import (
    MAKER_CODE,
    EchonetObject,
    HvMeterObject,
    LvMeterObject,
    MeterObject,
    NodeProfile,
)
from kenshin.broute.state import FleetState
from kenshin.errors import EchonetError

log = logging.getLogger(__name__)
EPC_INSTANCE_LIST_NOTIFICATION = 0xD5


def identification_number(device_id: int) -> bytes:
    """Node profile 0x83: 0xFE, maker code, 13 unique bytes (the meter's device id)."""
    return b"\xfe" + MAKER_CODE.to_bytes(3, "big") + device_id.to_bytes(13, "big")


class MeterNode:
    """One meter's ECHONET Lite node: node profile + meter object (SPEC B1, B2)."""

    def __init__(self, state: FleetState, key: int) -> None:
        info = state.info(key)
        self.info = info
        self.meter: MeterObject = (
            LvMeterObject(state, info) if info.is_low_voltage else HvMeterObject(state, info)
        )
        self.profile = NodeProfile(identification_number(info.device_id), [self.meter.eoj])
        self.objects: tuple[EchonetObject, ...] = (self.profile, self.meter)
        self._tid = 0
        self._announcements: list[bytes] = []
        self.requests = 0  # frames answered or dropped, for the status line
        self.rejected = 0  # datagrams that were not valid ECHONET Lite

    @property
    def supply_point_id(self) -> str:
        return self.info.supply_point_id

    # -- spontaneous frames

    def _next_tid(self) -> int:
        self._tid = (self._tid + 1) & 0xFFFF
        return self._tid

    def notification(self, obj: EchonetObject, epcs: Iterable[int]) -> bytes:
        """An INF (0x73) from ``obj`` to the node profile class of every node."""
        props = tuple(Property(epc, obj.get(epc) or b"") for epc in epcs)
        frame = Frame(self._next_tid(), obj.eoj, EOJ.node_profile(), ESV.INF, props)
        return encode(frame)

    def announcement(self) -> bytes:
        """The instance list notification 0xD5 INF sent at start-up (SPEC B1)."""
        return self.notification(self.profile, [EPC_INSTANCE_LIST_NOTIFICATION])

    def pop_announcements(self) -> list[bytes]:
        """Status-change INFs (announced properties changed by a Set) not yet sent."""
        out, self._announcements = self._announcements, []
        return out

    # -- requests

    def handle(self, data: bytes, source: str = "?") -> list[bytes]:
        """The reply frames for one received datagram from ``source`` (never raises)."""
        try:
            frame = decode(data)
        except EchonetError as exc:
            self.rejected += 1
            log.debug("ignoring a datagram from %s: %s", source, exc)
            return []
        try:
            return self._dispatch(frame)
        except Exception:  # a bug must not take the node down: log it and keep serving
            log.warning("failed to answer %s from %s", frame.esv.name, source, exc_info=True)
            return []

    def _target(self, deoj: EOJ) -> EchonetObject | None:
        for obj in self.objects:
            if deoj == obj.eoj or (deoj.instance == 0 and deoj.class_id == obj.eoj.class_id):
                return obj
        return None

    def _dispatch(self, frame: Frame) -> list[bytes]:
        obj = self._target(frame.deoj)
        if obj is None or not (frame.esv.is_request or frame.esv is ESV.INFC):
            return []
        self.requests += 1
        esv = frame.esv
        if esv is ESV.GET or esv is ESV.INF_REQ:
            props, ok = self._get(obj, frame.properties)
            reply = esv.response_of(ok)
            return [] if reply is None else [self._reply(frame, obj, reply, props)]
        if esv is ESV.SETC or esv is ESV.SETI:
            props, ok = self._set(obj, frame.properties)
            reply = esv.response_of(ok)
            return [] if reply is None else [self._reply(frame, obj, reply, props)]
        if esv is ESV.SETGET:
            set_props, set_ok = self._set(obj, frame.set_properties)
            get_props, get_ok = self._get(obj, frame.properties)
            reply = ESV.SETGET_RES if set_ok and get_ok else ESV.SETGET_SNA
            return [self._reply(frame, obj, reply, get_props, set_props)]
        if esv is ESV.INFC:  # acknowledge with the EPCs, PDC 0
            props = tuple(Property(p.epc) for p in frame.properties)
            return [self._reply(frame, obj, ESV.INFC_RES, props)]
        return []

    def _reply(
        self,
        request: Frame,
        obj: EchonetObject,
        esv: ESV,
        props: tuple[Property, ...],
        set_props: tuple[Property, ...] = (),
    ) -> bytes:
        return encode(Frame(request.tid, obj.eoj, request.seoj, esv, props, set_props))

    def _get(
        self, obj: EchonetObject, wanted: tuple[Property, ...]
    ) -> tuple[tuple[Property, ...], bool]:
        out: list[Property] = []
        ok = bool(wanted)
        for prop in wanted:
            edt = obj.get(prop.epc)
            if edt is None:
                ok = False
                out.append(Property(prop.epc))
            else:
                out.append(Property(prop.epc, edt))
        return tuple(out), ok

    def _set(
        self, obj: EchonetObject, wanted: tuple[Property, ...]
    ) -> tuple[tuple[Property, ...], bool]:
        out: list[Property] = []
        ok = bool(wanted)
        changed: list[int] = []
        for prop in wanted:
            before = obj.get(prop.epc) if prop.epc in obj.anno_map else None
            if obj.set(prop.epc, prop.edt):
                out.append(Property(prop.epc))
                if prop.epc in obj.anno_map and obj.get(prop.epc) != before:
                    changed.append(prop.epc)
            else:
                ok = False
                out.append(prop)
        if changed:  # SPEC B1: announce status changes of announced properties
            self._announcements.append(self.notification(obj, changed))
        return tuple(out), ok


def build_nodes(state: FleetState, keys: Iterable[int]) -> list[MeterNode]:
    """One node per meter key."""
    return [MeterNode(state, int(k)) for k in keys]
