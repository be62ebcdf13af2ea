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
