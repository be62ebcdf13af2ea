"""The direct path's transport: columnar slot messages handed to the head-end in-process.

Only ``kenshin simulate --aroute direct`` uses it. Envelopes of the wire path travel over an
:class:`kenshin.aroute.link.EnvelopeLink` (MQTT, or its in-memory twin) instead.
"""

from __future__ import annotations

from collections.abc import Callable

from kenshin.aroute.messages import UplinkMessage

UplinkHandler = Callable[[UplinkMessage], None]


class InProcessTransport:
    """Calls the subscribers directly; a message is delivered once, in order, or raises."""

    def __init__(self) -> None:
        self._handlers: list[UplinkHandler] = []
        self.published = 0

    def subscribe(self, handler: UplinkHandler) -> None:
        self._handlers.append(handler)

    def publish(self, message: UplinkMessage) -> None:
        if not self._handlers:
            raise RuntimeError("no head-end is subscribed to the in-process transport")
        self.published += 1
        for handler in self._handlers:
            handler(message)
