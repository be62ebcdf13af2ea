"""Security routes (issue 14): the OAuth 2.0 token endpoint (client credentials, RFC 6749 §4.4),
the people's login, the published signing keys (JWKS), who am I, the audit trail, the principals
and the kill switch. Who may call which is in ``kenshin.security.policy``; the gate in
``kenshin.api.guard``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from kenshin.api.guard import facts_of
from kenshin.api.params import parse_instant
from kenshin.api.report_routes import csv_bytes, plain
from kenshin.core.timeslots import to_epoch_us
from kenshin.errors import Forbidden, InvalidInput, Unauthenticated
from kenshin.security.principals import Kind, Party, Principal, Role
from kenshin.security.service import Security

MAX_FORM_BYTES = 4096


class LoginRequest(BaseModel):
    name: str = Field(max_length=63)
    password: str = Field(max_length=200)


class PasswordChange(BaseModel):
    current: str = Field(max_length=200)
    new: str = Field(max_length=200)


class PrincipalRequest(BaseModel):
    name: str = Field(max_length=63, examples=["retailer-a"])
    kind: str = Field(description="staff, organisation or device.")
    roles: list[str] = Field(default=[], description="Staff: viewer, engineer, operator, …")
    party: str | None = Field(default=None, description="retailer, aggregator, … (not staff).")
    supply_points: list[str] = Field(default=[], max_length=1_000_000)
    scopes: list[str] | None = None
    rate_per_s: float = Field(default=20.0, gt=0, le=10_000)
    boundary: str = Field(default="", max_length=2000, description="責任分界点 and contact.")


class Reason(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


def _token_body(token: str, expires_in: int, scopes: frozenset[str]) -> JSONResponse:
    # RFC 6749 §5.1: no caching of tokens
    return JSONResponse(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": " ".join(sorted(scopes)),
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="kenshin"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def security_router(security: Security) -> tuple[APIRouter, APIRouter]:
    """(routes at the root: token endpoint and JWKS; routes under /api/v1)."""
    root = APIRouter(tags=["security"])
    api = APIRouter(tags=["security"])

    @root.post("/oauth/token")
    async def token(request: Request) -> JSONResponse:
        """OAuth 2.0 client credentials: ``grant_type=client_credentials`` form-encoded, the
        client id and secret in HTTP Basic or the form (``client_id``, ``client_secret``),
        optional ``scope``. Answers a short-lived bearer token (RFC 6749 §4.4, §5)."""
        raw = await request.body()
        if len(raw) > MAX_FORM_BYTES:
            return _oauth_error(400, "invalid_request", "the request body is too large")
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(
                400, "unsupported_grant_type", "only grant_type=client_credentials is served"
            )
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return _oauth_error(400, "invalid_request", "malformed Basic credentials")
            user, _, password = decoded.partition(":")
            client_id, secret = unquote(user), unquote(password)
        if not client_id or not secret:
            return _oauth_error(401, "invalid_client", "client id and secret are needed")
        facts = facts_of(request.scope)
        facts["who"] = client_id[:63]  # as claimed: a failed attempt is audited under it
        try:
            issued = security.token(client_id, secret, form.get("scope"))
        except Unauthenticated as exc:
            facts["reason"] = str(exc)
            return _oauth_error(401, "invalid_client", str(exc))
        except Forbidden as exc:
            facts["reason"] = str(exc)
            return _oauth_error(
                400, "invalid_scope" if "scope" in str(exc) else "unauthorized_client", str(exc)
            )
        return _token_body(*issued)

    @root.get("/.well-known/jwks.json")
    def jwks() -> dict[str, Any]:
        """The public keys that sign access tokens (RFC 7517); old keys stay while their tokens
        may still be valid."""
        return security.keys.jwks()

    @api.post("/login")
    def login(body: LoginRequest, request: Request) -> JSONResponse:
        """A person's login (name and password): the same bearer token as a machine client's."""
        facts = facts_of(request.scope)
        facts["who"] = body.name
        try:
            issued = security.token(body.name, body.password)
        except Unauthenticated as exc:
            facts["reason"] = "wrong name or password"
            raise Unauthenticated("wrong name or password") from exc
        return _token_body(*issued)

    @api.post("/password")
    def change_password(body: PasswordChange, request: Request) -> dict[str, str]:
        """A person sets their own password (staff: at least 12 characters); the tokens
        issued before stop working, so the answer says to log in again."""
        principal: Principal = request.state.principal
        security.change_password(principal.name, body.current, body.new)
        return {"name": principal.name, "changed": "log in again with the new password"}

    @api.get("/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        """Who the token speaks for and what it may do."""
        principal: Principal = request.state.principal
        return principal.view()

    @api.get("/audit")
    def audit(
        start: str | None = Query(None, description="Exclusive start; default end − 1 day."),
        end: str | None = Query(None, description="Inclusive end; default now."),
        principal: str | None = Query(None, description="Only this principal's requests."),
        limit: int = Query(1000, ge=1, le=100_000),
        format: str = Query("json", description="json or csv (a download)."),
    ) -> Response:
        """The audit trail: every request and refusal, who, what, which meters, the result and
        the time, oldest first (security admins)."""
        if format not in ("json", "csv"):
            raise InvalidInput(f"format must be json or csv, got {format!r}")
        end_ts = (
            dt.datetime.fromtimestamp(security.now(), dt.UTC)
            if end is None
            else parse_instant("end", end)
        )
        start_ts = end_ts - dt.timedelta(days=1) if start is None else parse_instant("start", start)
        table = security.trail.read(to_epoch_us(start_ts), to_epoch_us(end_ts), principal, limit)
        if format == "csv":
            return Response(
                csv_bytes(table),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
            )
        return JSONResponse({"total": table.num_rows, "items": plain(table).to_pylist()})

    @api.get("/principals")
    def list_principals() -> dict[str, Any]:
        """Every registered principal: staff, organisations, devices (no secrets)."""
        return {"items": [p.view() for p in security.principals()]}

    @api.get("/connections")
    def connections() -> dict[str, Any]:
        """Every principal with its traffic (SPEC X5 ⑤): requests and refusals in all and in the
        monitor's window, the supply points it read in the window, and its alerts."""
        return {"items": security.connections()}

    @api.post("/principals", status_code=201)
    def add_principal(body: PrincipalRequest) -> JSONResponse:
        """Register a principal; the answer carries its secret, shown this once."""
        try:
            kind = Kind(body.kind)
            roles = [Role(r) for r in body.roles]
            party = None if body.party is None else Party(body.party)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        principal, secret = security.add(
            body.name,
            kind,
            roles=roles,
            party=party,
            supply_points=body.supply_points,
            scopes=body.scopes,
            rate_per_s=body.rate_per_s,
            boundary=body.boundary,
        )
        return JSONResponse(
            {**principal.view(), "secret": secret},
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    @api.post("/principals/{name}/disconnect")
    def disconnect(
        request: Request, name: str = Path(max_length=63), body: Reason = Body()
    ) -> dict[str, Any]:
        """The kill switch (SPEC X6 ③): refused from its next request, its tokens dead."""
        actor: Principal = request.state.principal
        if name == actor.name:
            raise InvalidInput("a principal cannot disconnect itself")
        return security.disconnect(name, actor.name, body.reason).view()

    @api.post("/principals/{name}/reconnect")
    def reconnect(
        request: Request, name: str = Path(max_length=63), body: Reason = Body()
    ) -> dict[str, Any]:
        """Let a disconnected principal in again (with new tokens: the old ones stay dead)."""
        actor: Principal = request.state.principal
        return security.reconnect(name, actor.name, body.reason).view()

    @api.post("/principals/{name}/secret")
    def new_secret(name: str = Path(max_length=63)) -> JSONResponse:
        """A new secret (the old one and its tokens stop working), shown this once."""
        secret = security.new_secret(name)
        return JSONResponse({"name": name, "secret": secret}, headers={"Cache-Control": "no-store"})

    @api.post("/security/keys/rotate")
    def rotate() -> dict[str, Any]:
        """A new token-signing key; tokens signed by the old one stay valid until they expire."""
        return {"kid": security.keys.rotate(int(security.now()))}

    return root, api
