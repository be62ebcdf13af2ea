"""The command book's audit trail (SPEC X2): every transition of every command, as the book
writes it (:class:`~kenshin.hes.commands.CommandBook`), to a sink."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from kenshin.aroute.frames import CommandKind
from kenshin.hes.command_rules import CommandState


class AuditEntry(NamedTuple):
    at_us: int
    command_id: int
    meter_key: int
    kind: CommandKind
    from_state: CommandState | None  # None: the request itself
    to_state: CommandState
    detail: str
    requested_by: str


class AuditSink(Protocol):
    """Where the book writes every transition. A sink that also has ``forget(command_ids)`` is
    told which commands the book forgot (see :class:`MemoryAudit`); others keep everything."""

    def append(self, entry: AuditEntry) -> None: ...


class MemoryAudit:
    """The default sink: each command's entries in memory, as long as the book keeps the command
    (it calls :meth:`forget` when it prunes). Iterates command by command, in request order."""

    def __init__(self) -> None:
        self._by_command: dict[int, list[AuditEntry]] = {}
        self._entries = 0

    def append(self, entry: AuditEntry) -> None:
        self._by_command.setdefault(entry.command_id, []).append(entry)
        self._entries += 1

    def for_command(self, command_id: int) -> list[AuditEntry]:
        return list(self._by_command.get(command_id, ()))

    def forget(self, command_ids: Iterable[int]) -> None:
        for command_id in command_ids:
            self._entries -= len(self._by_command.pop(command_id, ()))

    def __len__(self) -> int:
        return self._entries

    def __iter__(self) -> Iterator[AuditEntry]:
        for entries in self._by_command.values():
            yield from entries


__all__ = ["AuditEntry", "AuditSink", "MemoryAudit"]
