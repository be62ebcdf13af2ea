"""Who may call which route (issue 14 item 3; SPEC X2, X3): one table, route × role or scope ×
resource rule. Every route the API serves is in :data:`POLICY` or :data:`OPEN` (a test holds
the app to it), so a new route cannot be forgotten.

Staff are judged by role. Organisations and devices by scope, and on every route that names a
supply point also by object (they see only the supply points they serve: a meter outside them is
answered as unknown, 404, so ids cannot be probed). Fleet-wide answers, commands, polls,
B-route credentials, edits, metrics for people, the audit trail and the principals are for staff.
"""

from __future__ import annotations

from dataclasses import dataclass

from kenshin.security.principals import Kind, Principal, Role

READERS = frozenset({Role.VIEWER, Role.ENGINEER, Role.OPERATOR, Role.APPROVER})
ENGINEERS = frozenset({Role.ENGINEER, Role.OPERATOR})
OPERATORS = frozenset({Role.OPERATOR})
ADMINS = frozenset({Role.SECURITY_ADMIN})
APPROVERS = frozenset({Role.APPROVER})  # the second person of the two-person rule
EVERYONE = frozenset(Role)


@dataclass(frozen=True, slots=True)
class Rule:
    staff: frozenset[Role]  # staff roles allowed
    scope: str | None = None  # the scope an organisation's or device's token needs; None: staff
    per_meter: bool = False  # the route names a supply point: check the object too


def _meter(scope: str | None = "readings:read") -> Rule:
    return Rule(READERS, scope, per_meter=True)


V1 = "/api/v1"
# (method, route template) → rule
POLICY: dict[tuple[str, str], Rule] = {
    ("GET", f"{V1}/meters"): Rule(READERS, "meters:read"),
    ("GET", f"{V1}/meters/{{supply_point_id}}"): _meter("meters:read"),
    ("GET", f"{V1}/meters/{{supply_point_id}}/readings"): _meter(),
    ("GET", f"{V1}/meters/{{supply_point_id}}/readings/versions"): _meter(),
    ("GET", f"{V1}/meters/{{supply_point_id}}/differences"): _meter(),
    ("GET", f"{V1}/meters/{{supply_point_id}}/gaps"): _meter(None),
    ("GET", f"{V1}/meters/{{supply_point_id}}/events"): _meter("events:read"),
    ("GET", f"{V1}/meters/{{supply_point_id}}/readings/edits"): _meter(None),
    ("POST", f"{V1}/meters/{{supply_point_id}}/readings/edits"): Rule(ENGINEERS, per_meter=True),
    ("GET", f"{V1}/meters/{{supply_point_id}}/broute-credentials"): Rule(OPERATORS),
    ("POST", f"{V1}/meters/{{supply_point_id}}/broute-credentials"): Rule(OPERATORS),
    ("POST", f"{V1}/meters/{{supply_point_id}}/commands"): Rule(OPERATORS),
    ("GET", f"{V1}/reports/{{kind}}"): Rule(READERS),
    ("GET", f"{V1}/outages"): Rule(READERS),
    ("GET", f"{V1}/outages/{{event_id}}"): Rule(READERS),
    ("GET", f"{V1}/outages/indices"): Rule(READERS),
    ("GET", f"{V1}/meters/{{supply_point_id}}/outages"): _meter("meters:read"),
    ("GET", f"{V1}/hes/slo"): Rule(READERS),
    ("GET", f"{V1}/hes/commands"): Rule(READERS),
    ("GET", f"{V1}/hes/commands/{{command_id}}"): Rule(READERS),
    ("POST", f"{V1}/hes/polls"): Rule(OPERATORS),
    ("GET", f"{V1}/control/requests"): Rule(READERS),
    ("GET", f"{V1}/control/requests/{{request_id}}"): Rule(READERS),
    ("POST", f"{V1}/control/requests/{{request_id}}/release"): Rule(APPROVERS),
    ("POST", f"{V1}/control/requests/{{request_id}}/reject"): Rule(APPROVERS),
    ("GET", f"{V1}/campaigns"): Rule(READERS),
    ("GET", f"{V1}/campaigns/{{campaign_id}}"): Rule(READERS),
    ("POST", f"{V1}/campaigns"): Rule(OPERATORS),
    ("POST", f"{V1}/campaigns/{{campaign_id}}/approve"): Rule(APPROVERS),
    ("POST", f"{V1}/campaigns/{{campaign_id}}/reject"): Rule(APPROVERS),
    # stopping is always safe: either person may
    ("POST", f"{V1}/campaigns/{{campaign_id}}/abort"): Rule(OPERATORS | APPROVERS),
    ("GET", f"{V1}/hes/polls/{{poll_id}}"): Rule(READERS),
    ("GET", "/metrics"): Rule(READERS | ADMINS, "metrics:read"),
    ("GET", f"{V1}/audit"): Rule(ADMINS),
    ("GET", f"{V1}/principals"): Rule(ADMINS),
    ("GET", f"{V1}/connections"): Rule(ADMINS),
    ("POST", f"{V1}/principals"): Rule(ADMINS),
    ("POST", f"{V1}/principals/{{name}}/disconnect"): Rule(ADMINS),
    ("POST", f"{V1}/principals/{{name}}/reconnect"): Rule(ADMINS),
    ("POST", f"{V1}/principals/{{name}}/secret"): Rule(ADMINS),
    ("POST", f"{V1}/security/keys/rotate"): Rule(ADMINS),
    ("GET", f"{V1}/whoami"): Rule(EVERYONE, "meters:read"),
    ("POST", f"{V1}/password"): Rule(EVERYONE),
}

# answered without credentials: liveness, the token endpoints, the public keys, the docs
OPEN = frozenset(
    {
        ("GET", f"{V1}/health"),
        ("POST", "/oauth/token"),
        ("POST", f"{V1}/login"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
        ("GET", "/static-offline-docs"),
    }
)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    status: int = 200  # 403 (not allowed) or 404 (a supply point not the principal's)
    reason: str = ""


def decide(
    principal: Principal,
    granted: frozenset[str],
    rule: Rule,
    supply_point: str | None,
) -> Decision:
    """May ``principal`` (its token granting ``granted``) call a route of ``rule``, about
    ``supply_point`` when the route names one?"""
    if principal.kind is Kind.STAFF:
        if principal.has_any(rule.staff):
            return Decision(True)
        roles = ", ".join(sorted(r.value for r in rule.staff)) or "no staff role"
        return Decision(False, 403, f"needs the role {roles}")
    if rule.scope is None:
        return Decision(False, 403, "for the utility's staff only")
    if rule.scope not in granted:
        return Decision(False, 403, f"needs the scope {rule.scope}")
    if rule.per_meter and supply_point not in principal.supply_points:
        return Decision(False, 404, f"no meter with supply point id {supply_point}")
    return Decision(True)
