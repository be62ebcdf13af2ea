"""Watching and cutting connections (issue 14 item 5; SPEC X5 ⑤, X6 ③): the monitor's alerts,
and the kill switch reaching a B-route device's credentials and live session."""

from __future__ import annotations

from kenshin.app.access import cut_broute_devices
from kenshin.broute.credentials import CredentialRegistry, Medium, SessionTable
from kenshin.security.audit import MemoryAuditSink
from kenshin.security.monitor import ConnectionMonitor
from kenshin.security.principals import Kind, Party, Role
from kenshin.security.service import MemoryPrincipals, Security

SPID = "0300000000000000000042"


def test_many_refusals_or_a_sudden_breadth_raise_one_alert_per_window():
    monitor = ConnectionMonitor(window_s=60, refusals_alert=5, meters_alert=3)
    raised = [monitor.observe("probe", f"03{i:020d}", 404, float(i)) for i in range(12)]
    assert [len(r) for r in raised] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]  # once a window
    assert raised[4][0].kind == "refusals" and "5 refusals" in raised[4][0].detail
    # a minute on, the earlier refusals have left the window: five more raise it again
    later = [monitor.observe("probe", "03" + "9" * 20, 404, 70.0 + i) for i in range(5)]
    assert [len(r) for r in later] == [0, 0, 0, 0, 1]
    # a staff token reading meter after meter: breadth (refusals do not count as read)
    got = [monitor.observe("staff-1", f"03{i:020d}", 200, 1.0 + i) for i in range(3)]
    assert [a.kind for r in got for a in r] == ["breadth"]
    # the same meter again and again is no breadth
    assert not any(monitor.observe("staff-2", SPID, 200, float(i)) for i in range(10))
    view = monitor.view("probe")
    assert view["requests"] == 17 and view["refusals"] == 17
    assert [a["kind"] for a in view["alerts"]] == ["refusals", "refusals"]


def test_an_alert_is_recorded_in_the_audit_trail():
    security = Security(MemoryPrincipals(), MemoryAuditSink(), now=lambda: 1_780_000_000.0)
    security.monitor = ConnectionMonitor(refusals_alert=3)
    for _ in range(3):
        security.observe("guesser", "", 401)
    rows = security.trail.read(0, 2**62).to_pylist()
    alerts = [r for r in rows if r["method"] == "ALERT"]
    assert [(a["principal"], a["route"]) for a in alerts] == [("guesser", "refusals")]


def test_disconnecting_a_broute_device_revokes_its_credentials_and_ends_its_session():
    security = Security(MemoryPrincipals(), MemoryAuditSink())
    registry = CredentialRegistry(None)
    credentials = registry.issue(SPID)
    sessions = SessionTable()
    granted = sessions.authenticate(
        registry, SPID, Medium.WISUN, "hems-1", credentials.route_id, credentials.password
    )
    assert granted.granted and granted.session is not None
    other = registry.issue("0300000000000000000043")  # another customer's meter: untouched
    cut_broute_devices(security, registry, lambda: [sessions])
    security.add("hems-1", Kind.DEVICE, party=Party.BROUTE_DEVICE, supply_points=[SPID])
    security.add("ops", Kind.STAFF, roles=[Role.SECURITY_ADMIN])
    security.disconnect("hems-1", "ops", "reported stolen")
    assert registry.current(SPID) is None
    assert not sessions.is_live(granted.session)
    assert not registry.verify(SPID, credentials.route_id, credentials.password)
    assert registry.current("0300000000000000000043") == other
    # a retailer's disconnect does not touch the B-route
    security.add(
        "retail", Kind.ORGANISATION, party=Party.RETAILER, supply_points=["0300000000000000000043"]
    )
    security.disconnect("retail", "ops", "contract ended")
    assert registry.current("0300000000000000000043") == other


def test_the_audit_trail_is_written_by_its_own_thread_within_seconds():
    import time

    from kenshin.security.audit import FLUSH_S, AuditTrail

    sink = MemoryAuditSink()
    trail = AuditTrail(sink)
    trail.record(1, "alice", "GET", "/api/v1/whoami", "/api/v1/whoami", "", 200)
    assert sink.read_audit(0, 10).num_rows == 0  # the request did not wait for the store
    deadline = time.monotonic() + 3 * FLUSH_S + 2
    while sink.read_audit(0, 10).num_rows == 0:
        assert time.monotonic() < deadline, "the writer thread never wrote the row"
        time.sleep(0.05)
    assert trail.written == 1
