"""The API's gate (issue 14 items 3 and 4): every request is authenticated by its bearer token,
rate-limited, authorized by the policy table (``kenshin.security.policy``) and recorded in the
audit trail with its result, refusals included.

Two parts. :func:`guard_dependency` runs before every route's handler (an app-wide FastAPI
dependency, so it knows the route template and path parameters FastAPI matched); it refuses by
raising the errors the app renders (401, 403, 404, 429) and leaves the principal in
``request.state.principal``. :class:`AuditMiddleware`, outermost, refuses tokens in URLs and
records every request with the status it got. A route missing from the policy table is refused
(fail closed); the docs and the token endpoints are open.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kenshin.errors import Forbidden, RateLimited, Unauthenticated, UnknownMeter
from kenshin.security.policy import OPEN, POLICY, decide
from kenshin.security.service import Security

ANONYMOUS = "-"
# health, the keys and the docs are not watched; the token endpoints are (guessing secrets)
UNWATCHED = {route for _, route in OPEN} - {"/oauth/token", "/api/v1/login"}
AUDIT_KEY = "kenshin.audit"  # the request's audit facts, in the ASGI scope


def facts_of(scope: Scope) -> dict[str, str]:
    """The request's audit facts (who, route, meters, reason), which a handler may complete."""
    facts: dict[str, str] = scope.setdefault(AUDIT_KEY, {})
    return facts


def route_template(scope: Scope) -> str:
    """The full template of the route that matched (``/api/v1/meters/{supply_point_id}``): the
    route knows its own path below the routers' prefixes, and the prefixes are the leading
    segments of the path asked for (kenshin's prefixes hold no parameters)."""
    own = str(getattr(scope.get("route"), "path", "") or "")
    path = str(scope["path"])
    if not own:
        return path
    segments = path.split("/")
    depth = len(own.split("/")) - 1
    return "/".join(segments[: len(segments) - depth]) + own


def guard_dependency(security: Security) -> Callable[[Request], Awaitable[None]]:
    async def guard(request: Request) -> None:
        scope = request.scope
        template = route_template(scope)
        method = request.method
        facts = facts_of(scope)
        facts["route"] = template
        meters = str(request.path_params.get("supply_point_id", ""))
        facts["meters"] = meters
        key = (method, template)
        if key in OPEN:
            return
        rule = POLICY.get(key)
        if rule is None:  # fail closed: a route nobody put in the table serves nobody
            facts["reason"] = "route not in the access policy"
            raise Forbidden(f"{method} {template} is in no access policy")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            facts["reason"] = "no bearer token"
            raise Unauthenticated(
                "this route needs a bearer token (POST /oauth/token with client credentials)"
            )
        try:
            principal, claims = security.authenticate(token.strip())
        except (Unauthenticated, Forbidden) as exc:
            facts["reason"] = str(exc)
            raise
        facts["who"] = principal.name
        wait = security.limiter.take(principal.name, principal.rate_per_s, time.monotonic())
        if wait is not None:
            facts["reason"] = "rate limited"
            raise RateLimited(
                f"{principal.name} asks more than {principal.rate_per_s:g} times a second; "
                f"retry after {wait} s",
                wait,
            )
        decision = decide(principal, claims.scopes, rule, meters or None)
        if not decision.allowed:
            facts["reason"] = decision.reason
            if decision.status == 404:  # not theirs: answered as unknown, ids cannot be probed
                raise UnknownMeter(decision.reason)
            raise Forbidden(decision.reason)
        request.state.principal = principal

    return guard


class AuditMiddleware:
    """Outermost: refuse tokens in URLs, then record every request and its status."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        at_us = int(self.security.now() * 1_000_000)
        facts = facts_of(scope)
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": _hardened(message.get("headers") or [], facts)}
            await send(message)

        try:
            if b"access_token=" in scope.get("query_string", b""):
                facts["reason"] = "token in the URL"
                await _refuse(
                    send_status,
                    400,
                    "token_in_url",
                    "tokens in URLs are refused (they end up in logs); send Authorization: Bearer",
                )
            else:
                await self.app(scope, receive, send_status)
        finally:
            client: Any = scope.get("client") or ("", 0)
            who, meters = facts.get("who", ANONYMOUS), facts.get("meters", "")
            self.security.trail.record(
                at_us,
                who,
                str(scope["method"]),
                facts.get("route", ""),
                str(scope["path"]),
                meters,
                status,
                facts.get("reason", ""),
                str(client[0]),
            )
            if facts.get("route") not in UNWATCHED:
                self.security.observe(who, meters, status)


def _hardened(headers: Any, facts: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """OWASP API8: no content sniffing, and no caching of answers that needed credentials
    (meter data must not stay in a shared cache or the browser's)."""
    out = [(bytes(k), bytes(v)) for k, v in headers]
    names = {k.lower() for k, _ in out}
    out.append((b"x-content-type-options", b"nosniff"))
    if b"cache-control" not in names and facts.get("route") not in UNWATCHED:
        out.append((b"cache-control", b"no-store"))
    return out


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
