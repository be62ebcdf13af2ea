"""Credentials for API tests: a principal registered on the app's security service and its bearer
token set on the client, obtained the way a real client does (POST /oauth/token)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from kenshin.errors import AlreadyExists
from kenshin.security.principals import Kind, Party, Role

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ALL_STAFF_ROLES = tuple(Role)


def token_for(client: TestClient, name: str, secret: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "client_id": name, "client_secret": secret}
    if scope is not None:
        form["scope"] = scope
    response = client.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def register(
    client: TestClient,
    name: str,
    kind: Kind = Kind.STAFF,
    *,
    roles: Iterable[Role] = (),
    party: Party | None = None,
    supply_points: Iterable[str] = (),
    rate_per_s: float = 1000.0,
) -> str:
    """Register ``name`` on the client's app; returns its secret."""
    security = client.app.state.security  # type: ignore[attr-defined]
    try:
        _, secret = security.add(
            name, kind, roles=roles, party=party, supply_points=supply_points, rate_per_s=rate_per_s
        )
    except AlreadyExists:  # the store outlived an earlier app (a module's store): a new secret
        secret = security.new_secret(name)
    return str(secret)


def authorized(
    client: TestClient, name: str = "tester", roles: Iterable[Role] = ALL_STAFF_ROLES
) -> TestClient:
    """``client`` with the bearer token of a staff principal holding ``roles`` (all by default)."""
    secret = register(client, name, roles=roles)
    client.headers["Authorization"] = f"Bearer {token_for(client, name, secret)}"
    return client
