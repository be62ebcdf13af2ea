"""The command book's audit trail (SPEC X2): every transition of every command, as the book
writes it (:class:`~kenshin.hes.commands.CommandBook`), to a sink."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

import pyarrow as pa

from kenshin.aroute.frames import CommandKind
from kenshin.core.schema import COMMAND_LOG_SCHEMA
from kenshin.hes.command_rules import CommandState

log = logging.getLogger("kenshin.hes.commands")


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


class CommandLogWriter(Protocol):
    """Where a command's transitions are kept for good (the store's command log)."""

    def append_command_log(self, rows: pa.Table) -> None: ...


class StoredAudit:
    """The book's entries in memory (``inner``, which the book prunes) and, for good, in the
    store's command log: written by :meth:`flush` (the book's tick), so a command's status
    outlives the book (issue 16). A write that fails is kept and tried again at the next."""

    def __init__(self, writer: CommandLogWriter, inner: MemoryAudit) -> None:
        self.writer, self.inner = writer, inner
        self._pending: list[AuditEntry] = []

    def append(self, entry: AuditEntry) -> None:
        self.inner.append(entry)
        self._pending.append(entry)

    def forget(self, command_ids: Iterable[int]) -> None:
        self.inner.forget(command_ids)

    def for_command(self, command_id: int) -> list[AuditEntry]:
        return self.inner.for_command(command_id)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[AuditEntry]:
        return iter(self.inner)

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        table = pa.table(
            {
                "changed_at": pa.array([e.at_us for e in rows], pa.int64()),
                "command_id": [e.command_id for e in rows],
                "meter_key": [e.meter_key for e in rows],
                "kind": [e.kind.name.lower() for e in rows],
                "from_state": [None if e.from_state is None else e.from_state.label for e in rows],
                "to_state": [e.to_state.label for e in rows],
                "detail": [e.detail for e in rows],
                "requested_by": [e.requested_by for e in rows],
            }
        )
        try:
            self.writer.append_command_log(table.cast(COMMAND_LOG_SCHEMA))
        except Exception as exc:  # the store is down: keep them for the next tick
            self._pending = rows + self._pending
            log.warning("command log not written (%d rows kept for later): %s", len(rows), exc)


__all__ = ["AuditEntry", "AuditSink", "CommandLogWriter", "MemoryAudit", "StoredAudit"]
