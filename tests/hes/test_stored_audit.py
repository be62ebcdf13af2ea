"""The command book's log kept in the store (issue 16; X2): written at the book's tick, every
transition once, and kept for the next tick when the store refuses it."""

from __future__ import annotations

import pyarrow as pa

from kenshin.aroute.frames import CommandKind
from kenshin.errors import StoreError
from kenshin.hes.command_audit import AuditEntry, MemoryAudit, StoredAudit
from kenshin.hes.command_rules import CommandState


class Writer:
    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.down = False

    def append_command_log(self, rows: pa.Table) -> None:
        if self.down:
            raise StoreError("the store is down")
        self.tables.append(rows)


def _entry(command_id: int, to: CommandState) -> AuditEntry:
    return AuditEntry(10, command_id, 3, CommandKind.SWITCH_OPEN, None, to, "d", "op")


def test_written_at_flush_once_and_kept_when_the_store_refuses() -> None:
    writer, inner = Writer(), MemoryAudit()
    audit = StoredAudit(writer, inner)
    audit.append(_entry(1, CommandState.REQUESTED))
    assert len(inner) == 1 and writer.tables == []  # nothing written before the tick
    writer.down = True
    audit.flush()
    audit.append(_entry(2, CommandState.REQUESTED))
    writer.down = False
    audit.flush()
    audit.flush()  # nothing new: nothing written
    [table] = writer.tables
    assert table.column("command_id").to_pylist() == [1, 2]
    assert table.column("to_state").to_pylist() == ["requested", "requested"]
    audit.forget([1])  # the book prunes memory only; the store keeps everything
    assert len(audit) == 1 and audit.for_command(2)
