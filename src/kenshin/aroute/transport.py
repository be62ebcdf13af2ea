"""Transports between collectors and the head-end: one small interface, several implementations.

:class:`InProcessTransport` delivers synchronously in the same process: the embedded system
(``kenshin up``) and big simulations use it. The MQTT transport of the A-route issue implements the
same two methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kenshin.aroute.messages import UplinkMessage

UplinkHandler = Callable[[UplinkMessage], None]


class UplinkTransport(Protocol):
    def publish(self, message: UplinkMessage) -> None:
        """Send a message from a collector towards the head-end."""
        ...

    def subscribe(self, handler: UplinkHandler) -> None:
        """Register the head-end's handler for delivered messages."""
        ...


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
