"""B-route credentials (SPEC B4) and access rules (B1, B2, X5)."""

from __future__ import annotations

import logging
import stat
import string
from pathlib import Path

import pytest

from kenshin.broute.credentials import (
    PASSWORD_LENGTH,
    ROUTE_ID_LENGTH,
    AccessPolicy,
    BrouteCredentials,
    CredentialRegistry,
    LanAccess,
    Medium,
    SessionTable,
    check_medium,
)
from kenshin.errors import InvalidInput, InvalidSetting, InvalidSupplyPointId

SPID = "0300000000000000000042"
OTHER = "0400000000000000000007"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------------
# credentials


def test_issue_formats() -> None:
    registry = CredentialRegistry(clock=lambda: 1_700_000_000.0)
    creds = registry.issue(SPID)
    assert len(creds.route_id) == ROUTE_ID_LENGTH == 32
    assert set(creds.route_id) <= set("0123456789ABCDEF")
    assert len(creds.password) == PASSWORD_LENGTH == 12
    assert all(c in string.ascii_uppercase + string.digits for c in creds.password)
    assert creds.pairing_id == creds.route_id[-8:]
    assert creds.issued_at.timestamp() == 1_700_000_000.0
    assert registry.current(SPID) == creds
    assert registry.current(OTHER) is None


def test_issue_is_random() -> None:
    registry = CredentialRegistry()
    issued = [registry.issue(SPID) for _ in range(20)]
    assert len({c.route_id for c in issued}) == 20
    assert len({c.password for c in issued}) == 20


def test_issue_checks_supply_point_id() -> None:
    with pytest.raises(InvalidSupplyPointId):
        CredentialRegistry().issue("12345")


def test_reissue_revokes_old() -> None:
    registry = CredentialRegistry()
    old = registry.issue(SPID)
    new = registry.issue(SPID)
    assert not registry.verify(SPID, old.route_id, old.password)
    assert registry.verify(SPID, new.route_id, new.password)
    assert registry.current(SPID) == new


def test_verify_is_exact() -> None:
    registry = CredentialRegistry()
    creds = registry.issue(SPID)
    registry.issue(OTHER)
    assert registry.verify(SPID, creds.route_id, creds.password)
    assert not registry.verify(OTHER, creds.route_id, creds.password)  # other meter
    assert not registry.verify(SPID, creds.route_id.lower(), creds.password)
    assert not registry.verify(SPID, creds.route_id, creds.password.lower())
    assert not registry.verify(SPID, creds.route_id[:-1], creds.password)
    assert not registry.verify(SPID, creds.route_id, creds.password + " ")
    assert not registry.verify(SPID, creds.route_id, creds.password[:-1] + "\u00e9")
    assert not registry.verify(SPID, creds.password, creds.route_id)
    assert not registry.verify(SPID, "", "")
    assert not registry.verify("0999999999999999999999", creds.route_id, creds.password)


def test_revoke() -> None:
    registry = CredentialRegistry()
    creds = registry.issue(SPID)
    assert registry.revoke(SPID)
    assert not registry.revoke(SPID)
    assert not registry.verify(SPID, creds.route_id, creds.password)


def test_credentials_validate_and_hide_password() -> None:
    creds = CredentialRegistry().issue(SPID)
    assert creds.password not in repr(creds)
    with pytest.raises(InvalidInput):
        BrouteCredentials(SPID, "0" * 31, creds.password, creds.issued_at)
    with pytest.raises(InvalidInput):
        BrouteCredentials(SPID, "g" * 32, creds.password, creds.issued_at)
    with pytest.raises(InvalidInput):
        BrouteCredentials(SPID, creds.route_id, "ABC DEF GHIJ", creds.issued_at)


def test_json_persistence(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "broute.json"
    registry = CredentialRegistry(path)
    creds = registry.issue(SPID)
    registry.issue(OTHER)
    registry.revoke(OTHER)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = CredentialRegistry(path)
    assert reloaded.current(SPID) == creds
    assert reloaded.current(OTHER) is None
    assert reloaded.verify(SPID, creds.route_id, creds.password)
    assert not list(path.parent.glob(".broute-*"))  # no temporary files left


# ---------------------------------------------------------------------------------------------
# access rules


def test_wisun_is_one_to_one() -> None:
    with pytest.raises(InvalidSetting):
        AccessPolicy(Medium.WISUN, 2)
    clock = FakeClock()
    table = SessionTable({Medium.WISUN: AccessPolicy.wisun(100.0)}, clock=clock)
    first = table.start(SPID, Medium.WISUN, "dev-a")
    assert first.granted and first.session is not None
    refused = table.start(SPID, Medium.WISUN, "dev-b")
    assert not refused.granted and "dev-a" in refused.reason
    assert table.start(OTHER, Medium.WISUN, "dev-b").granted  # another meter is free
    again = table.start(SPID, Medium.WISUN, "dev-a")  # the holder may renew
    assert again.granted and again.reason == "renewed"
    assert again.session is not None
    assert not table.is_live(first.session)  # replaced by the renewal
    assert table.end(again.session, "SKTERM")
    assert not table.end(again.session)
    assert table.start(SPID, Medium.WISUN, "dev-b").granted


def test_expiry_frees_the_meter() -> None:
    clock = FakeClock()
    table = SessionTable({Medium.WISUN: AccessPolicy.wisun(100.0)}, clock=clock)
    session = table.start(SPID, Medium.WISUN, "dev-a").session
    assert session is not None and session.expires_at == 100.0
    clock.now = 99.9
    assert table.is_live(session)
    assert not table.start(SPID, Medium.WISUN, "dev-b").granted
    clock.now = 100.0
    assert not table.is_live(session)
    assert table.start(SPID, Medium.WISUN, "dev-b").granted
    assert [e.action for e in table.audit] == ["start", "refuse", "expire", "start"]


def test_wifi_and_ethernet_serve_several_devices() -> None:
    table = SessionTable(
        {Medium.WIFI: AccessPolicy.wifi(max_devices=3), Medium.ETHERNET: AccessPolicy.ethernet(2)}
    )
    assert all(table.start(SPID, Medium.WIFI, f"dev-{i}").granted for i in range(3))
    assert not table.start(SPID, Medium.WIFI, "dev-3").granted
    assert len(table.active(SPID, Medium.WIFI)) == 3
    assert table.start(SPID, Medium.ETHERNET, "dev-x").granted
    assert table.start(SPID, Medium.ETHERNET, "dev-y").granted
    assert not table.start(SPID, Medium.ETHERNET, "dev-z").granted
    with pytest.raises(InvalidSetting):
        table.start(SPID, Medium.WISUN, "dev-a")  # no policy configured


def test_authenticate_and_audit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kenshin.broute.access")
    registry = CredentialRegistry()
    creds = registry.issue(SPID)
    table = SessionTable(clock=FakeClock())
    bad = table.authenticate(registry, SPID, Medium.WISUN, "dev-a", creds.route_id, "X" * 12)
    assert not bad.granted and bad.reason == "bad credentials"
    good = table.authenticate(registry, SPID, Medium.WISUN, "dev-a", creds.route_id, creds.password)
    assert good.granted and good.session is not None
    table.end(good.session, "SKTERM")
    assert [(e.action, e.device, e.reason) for e in table.audit] == [
        ("refuse", "dev-a", "bad credentials"),
        ("start", "dev-a", ""),
        ("end", "dev-a", "SKTERM"),
    ]
    messages = [r.getMessage() for r in caplog.records if r.name == "kenshin.broute.access"]
    assert any("refuse" in m and "bad credentials" in m for m in messages)
    assert any("session end" in m for m in messages)
    assert all(creds.password not in m for m in messages)  # X3


def test_audit_is_bounded() -> None:
    table = SessionTable(clock=FakeClock(), audit_limit=5)
    for i in range(10):
        table.start(SPID, Medium.WIFI, f"dev-{i}")
    assert len(table.audit) == 5
    assert table.audit[-1].device == "dev-9"


def test_media_per_meter_kind() -> None:
    check_medium("lv", Medium.WISUN)  # B1
    check_medium("lv", Medium.WIFI)
    check_medium("hv", Medium.ETHERNET)  # B2
    check_medium("hv", Medium.WISUN)
    with pytest.raises(InvalidSetting):
        check_medium("lv", Medium.ETHERNET)
    with pytest.raises(InvalidSetting):
        check_medium("hv", Medium.WIFI)
    with pytest.raises(InvalidSetting):
        check_medium("mv", Medium.WISUN)


# ---------------------------------------------------------------------------------------------
# Wi-Fi / Ethernet allow-list


def test_lan_access_registers_devices_by_address() -> None:
    clock = FakeClock()
    table = SessionTable({Medium.WIFI: AccessPolicy.wifi(2, session_lifetime=60)}, clock=clock)
    access = LanAccess(table, {SPID: ["192.168.1.20", "0:0::1"]})
    assert access.devices(SPID) == {"192.168.1.20", "::1"}  # canonical forms
    assert access.devices(OTHER) == frozenset()
    with pytest.raises(InvalidSetting, match="IP address"):
        access.register(SPID, "my-hems")
    with pytest.raises(InvalidSupplyPointId):
        access.register("12", "192.168.1.21")

    assert access.admit(SPID, Medium.WIFI, "192.168.1.20")
    assert access.admit(SPID, Medium.WIFI, "192.168.1.20")  # the same session
    assert access.admit(SPID, Medium.WIFI, "::1")
    assert not access.admit(SPID, Medium.WIFI, "192.168.1.99")
    assert not access.admit(OTHER, Medium.WIFI, "192.168.1.20")  # registered for SPID only
    assert [(e.action, e.device) for e in table.audit] == [
        ("start", "192.168.1.20"),
        ("start", "::1"),
        ("refuse", "192.168.1.99"),
        ("refuse", "192.168.1.20"),
    ]
    clock.now = 61  # the sessions expire; the next datagram starts a new one
    assert access.admit(SPID, Medium.WIFI, "192.168.1.20")
    assert [e.action for e in table.audit[-3:]] == ["expire", "expire", "start"]

    assert access.unregister(SPID, "192.168.1.20")
    assert table.audit[-1].action == "end" and table.audit[-1].reason == "unregistered"
    assert not access.unregister(SPID, "192.168.1.20")
    assert not access.admit(SPID, Medium.WIFI, "192.168.1.20")
    assert table.audit[-1].reason == "not a registered device"
