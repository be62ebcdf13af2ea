"""Principals and the audit trail on every backend (issue 14: "stored on both backends"): what
one process registers, another opening the same store finds; the trail is appended, read back
by period and principal, and its order and values survive the round trip."""

from __future__ import annotations

import numpy as np

from kenshin.security.audit import AuditTrail
from kenshin.security.principals import Kind, Party, Role
from kenshin.security.service import Security

T0 = 1_780_000_000.0  # seconds


def test_principals_and_their_changes_are_kept_in_the_store(store):
    security = Security(store, store, now=lambda: T0)
    _, secret = security.add("ops-1", Kind.STAFF, roles=[Role.OPERATOR])
    security.add(
        "retail-a",
        Kind.ORGANISATION,
        party=Party.RETAILER,
        supply_points=["0300000000000000000001"],
        boundary="retail-a NOC, +81-3-0000-0000",
    )
    security.disconnect("retail-a", "ops-1", "contract ended")
    again = Security(store, store, now=lambda: T0 + 1)  # as a restarted process sees it
    names = [p.name for p in again.principals()]
    assert names == ["ops-1", "retail-a"]
    retail = again.get("retail-a")
    assert retail.active is False and retail.party is Party.RETAILER
    assert retail.supply_points == frozenset({"0300000000000000000001"})
    assert retail.boundary.startswith("retail-a NOC")
    token, _, _ = again.token("ops-1", secret)  # the hash was kept, not the secret
    assert again.authenticate(token)[0].name == "ops-1"
    assert all(secret not in doc for _, doc in store.read_principals())


def test_the_audit_trail_is_appended_and_read_by_period_and_principal(store):
    trail = AuditTrail(store)
    base_us = int(T0 * 1_000_000)
    for i in range(5):
        who = "alice" if i % 2 == 0 else "-"
        trail.record(base_us + i, who, "GET", "/api/v1/hes/slo", "/api/v1/hes/slo", "", 200 + i)
    trail.flush()
    rows = store.read_audit(base_us - 1, base_us + 10)
    assert rows.column("status").to_pylist() == [200, 201, 202, 203, 204]
    at = np.asarray(rows.column("logged_at").cast("int64").to_numpy())
    assert at.tolist() == [base_us + i for i in range(5)]
    alice = store.read_audit(base_us - 1, base_us + 10, principal="alice")
    assert alice.column("status").to_pylist() == [200, 202, 204]
    assert store.read_audit(base_us + 1, base_us + 3).num_rows == 2  # (start, end]
    assert store.read_audit(base_us - 1, base_us + 10, limit=2).num_rows == 2
