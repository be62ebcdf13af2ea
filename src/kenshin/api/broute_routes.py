"""HTTP routes for B-route credentials (SPEC B4, X5): the utility issues a customer's ID/password.

``POST /api/v1/meters/{id}/broute-credentials`` issues a new B-route ID (32 characters) and
password (12 characters) and returns them this once (201); a meter that has a pair already is
refused (409) unless ``?reissue=true`` asks to revoke it: the customer's HEMS stops working with
the old pair, which must not happen by a repeated click.
``GET`` shows the route ID and when it was issued, never the password. The registry is the app's
``app.state.broute_credentials`` (a :class:`~kenshin.broute.credentials.CredentialRegistry`,
saved to its JSON file when it has one). Every issue is logged to ``kenshin.broute.access`` (X5).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, Field

from kenshin.broute.credentials import BrouteCredentials, CredentialRegistry
from kenshin.core.ids import validate_supply_point_id
from kenshin.errors import AlreadyExists, NotFound, UnknownMeter
from kenshin.mdms.store import ReadingStore

access_log = logging.getLogger("kenshin.broute.access")


class BrouteCredentialsInfo(BaseModel):
    supply_point_id: str = Field(description="供給地点特定番号, 22 digits.")
    route_id: str = Field(description="B-route ID: 32 hex characters (SPEC B4).")
    issued_at: dt.datetime


class BrouteCredentialsIssued(BrouteCredentialsInfo):
    """Returned once, when issued: the password is not stored anywhere the API shows again."""

    password: str = Field(description="B-route password: 12 letters and digits (SPEC B4).")
    reissued: bool = Field(description="True if earlier credentials were revoked by this call.")


def _info(creds: BrouteCredentials) -> dict[str, Any]:
    return {
        "supply_point_id": creds.supply_point_id,
        "route_id": creds.route_id,
        "issued_at": creds.issued_at,
    }


def broute_router(store: ReadingStore) -> APIRouter:
    """``/meters/{id}/broute-credentials`` routes; the registry is ``app.state``'s."""
    api = APIRouter(tags=["b-route"])

    def registry(request: Request) -> CredentialRegistry:
        found: CredentialRegistry = request.app.state.broute_credentials
        return found

    def check_meter(supply_point_id: str) -> None:
        validate_supply_point_id(supply_point_id)
        if store.find_meter(supply_point_id) is None:
            raise UnknownMeter(f"no meter with supply point id {supply_point_id}")

    @api.post(
        "/meters/{supply_point_id}/broute-credentials",
        response_model=BrouteCredentialsIssued,
        status_code=201,
    )
    def issue_credentials(
        request: Request,
        response: Response,
        supply_point_id: str = Path(description="供給地点特定番号, 22 digits."),
        reissue: bool = Query(
            False, description="Revoke the meter's pair in use and issue a new one."
        ),
    ) -> dict[str, Any]:
        """Issue the meter's B-route ID and password; shown once. A meter with a pair in use
        gets a new one only with ``reissue=true`` (the old one stops working)."""
        check_meter(supply_point_id)
        reg = registry(request)
        current = reg.current(supply_point_id)
        if current is not None and not reissue:
            raise AlreadyExists(
                f"B-route credentials for {supply_point_id} were issued at "
                f"{current.issued_at.isoformat()} and are in use; pass reissue=true to revoke "
                "them and issue new ones"
            )
        reissued = current is not None
        creds = reg.issue(supply_point_id)
        client = request.client.host if request.client else "?"
        access_log.info(  # X5: who asked, for which meter; never the password
            "B-route credentials %s for %s via the API (client %s, route ID …%s)",
            "reissued" if reissued else "issued",
            supply_point_id,
            client,
            creds.pairing_id,
        )
        response.headers["Cache-Control"] = "no-store"  # a secret: no cache keeps it
        return {**_info(creds), "password": creds.password, "reissued": reissued}

    @api.get(
        "/meters/{supply_point_id}/broute-credentials",
        response_model=BrouteCredentialsInfo,
    )
    def show_credentials(
        request: Request,
        supply_point_id: str = Path(description="供給地点特定番号, 22 digits."),
    ) -> dict[str, Any]:
        """The meter's current B-route ID and when it was issued (never the password)."""
        check_meter(supply_point_id)
        creds = registry(request).current(supply_point_id)
        if creds is None:
            raise NotFound(f"no B-route credentials issued for {supply_point_id}")
        return _info(creds)

    return api


def install_broute_routes(
    app: FastAPI,
    router: APIRouter,
    store: ReadingStore,
    credentials: CredentialRegistry | str | os.PathLike[str] | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> CredentialRegistry:
    """Put the registry (or one kept in the file ``credentials``, or in memory) on ``app.state``
    and add the routes to ``router``. ``now``: the system's clock (simulated in ``kenshin up``),
    which dates what the API issues."""
    if isinstance(credentials, CredentialRegistry):
        registry = credentials
    elif now is not None:
        registry = CredentialRegistry(credentials, clock=lambda: now().timestamp())
    else:
        registry = CredentialRegistry(credentials)
    app.state.broute_credentials = registry
    router.include_router(broute_router(store))
    return registry
