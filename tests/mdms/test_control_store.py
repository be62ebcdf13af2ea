"""Switching campaigns and requests on every backend (issue 16 item 4): one document per
(kind, id), replaced as the record moves on, read back by kind in id order, kept when the store
is opened again."""

from __future__ import annotations

import json


def test_records_are_replaced_by_kind_and_id_and_survive_a_reopen(backend):
    store = backend.open()
    store.save_control_record("campaign", 2, json.dumps({"state": "pending"}))
    store.save_control_record("campaign", 1, json.dumps({"state": "running"}))
    store.save_control_record("request", 1, json.dumps({"verdict": "quarantined"}))
    store.save_control_record("campaign", 2, json.dumps({"state": "approved"}))
    assert [(i, json.loads(d)["state"]) for i, d in store.read_control_records("campaign")] == [
        (1, "running"),
        (2, "approved"),
    ]
    assert [i for i, _ in store.read_control_records("request")] == [1]
    assert store.read_control_records("emergency") == []
    store.close()
    again = backend.open(read_only=True)
    try:
        assert len(again.read_control_records("campaign")) == 2
    finally:
        again.close()


def test_the_command_log_keeps_every_transition_in_order(store):
    import pyarrow as pa

    from kenshin.core.schema import COMMAND_LOG_SCHEMA

    t0 = 1_780_000_000_000_000

    def rows(*entries: tuple[int, int, str | None, str]) -> pa.Table:
        return pa.table(
            {
                "changed_at": pa.array([t0 + e[0] for e in entries], pa.int64()),
                "command_id": [e[1] for e in entries],
                "meter_key": [7] * len(entries),
                "kind": ["switch_open"] * len(entries),
                "from_state": [e[2] for e in entries],
                "to_state": [e[3] for e in entries],
                "detail": ["x"] * len(entries),
                "requested_by": ["op+boss"] * len(entries),
            }
        ).cast(COMMAND_LOG_SCHEMA)

    store.append_command_log(rows((0, 1, None, "requested"), (1, 2, None, "requested")))
    store.append_command_log(rows((5, 1, "requested", "queued"), (9, 1, "queued", "sent")))
    log = store.read_command_log(1)
    assert log.schema == COMMAND_LOG_SCHEMA
    assert log.column("to_state").to_pylist() == ["requested", "queued", "sent"]
    assert log.column("from_state").to_pylist() == [None, "requested", "queued"]
    assert log.column("changed_at").cast(pa.int64()).to_pylist() == [t0, t0 + 5, t0 + 9]
    assert store.read_command_log(2).num_rows == 1 and store.read_command_log(3).num_rows == 0
