"""The HTTP API (SPEC S4): meters and their readings over JSON, versioned under ``/api/v1``.

The app reads only through the :class:`~kenshin.mdms.store.ReadingStore` protocol, so the same app
serves the embedded DuckDB store and the PostgreSQL backend. Errors are translated to HTTP here and
only here (:func:`_install_error_handlers`); routes just raise kenshin's exceptions.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

import kenshin
from kenshin.api.guard import AuditMiddleware, guard_dependency
from kenshin.api.mdms_routes import mdms_router
from kenshin.api.metrics import ApiMetrics, Figure, Figures
from kenshin.api.models import ErrorResponse, Health, MeterDetail, MeterPage, Readings
from kenshin.api.outage_routes import outage_router
from kenshin.api.params import (
    MAX_OFFSET,
    max_days_table,
    parse_channel,
    parse_instant,
    parse_period,
    parse_resolution,
)
from kenshin.api.report_routes import (
    deadlines_of,
    meter_filter,
    parse_report_day,
    report_router,
    report_table,
)
from kenshin.api.views import (
    meter_detail_view,
    meter_view,
    readings_view,
    recorded_summary,
    spec_of,
)
from kenshin.control.desk import CampaignDesk, desk_figures
from kenshin.control.gate import ControlGate, ControlLimits, gate_figures
from kenshin.control.signing import ControlSigner
from kenshin.core.ids import validate_supply_point_id
from kenshin.core.timeslots import from_epoch_us, to_epoch_us
from kenshin.errors import (
    AlreadyExists,
    CapabilityError,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    InvalidPeriod,
    InvalidSetting,
    InvalidSupplyPointId,
    KenshinError,
    NotFound,
    OutOfRange,
    PeriodTooLong,
    RateLimited,
    ReadOnly,
    StoreError,
    Unauthenticated,
    UnknownMeter,
)
from kenshin.mdms.reports import Deadlines, MeterFilter
from kenshin.mdms.store import ReadingQuery, ReadingStore
from kenshin.security.audit import MemoryAuditSink
from kenshin.security.principals import Kind, Principal
from kenshin.security.service import MemoryPrincipals, Security

if TYPE_CHECKING:
    from os import PathLike

    from kenshin.broute.credentials import CredentialRegistry
    from kenshin.hes.service import HeadEnd

API_PREFIX = "/api/v1"

log = logging.getLogger(__name__)

# what a client is told when the store fails: the store's own message names its file or DSN and
# may quote SQL, so that goes to the log only
STORE_FAILED = "the store could not answer this request; retry later (details in the server log)"
_INTERNAL = "the server failed to handle this request"

# kenshin exception → (HTTP status, error code); the most specific class in an error's MRO wins
_ERROR_TABLE: dict[type[KenshinError], tuple[int, str]] = {
    Unauthenticated: (401, "unauthenticated"),
    RateLimited: (429, "rate_limited"),
    Forbidden: (403, "forbidden"),
    InvalidSupplyPointId: (400, "invalid_supply_point_id"),
    OutOfRange: (422, "validation_error"),
    PeriodTooLong: (400, "period_too_long"),
    InvalidPeriod: (400, "invalid_period"),
    InvalidSetting: (400, "invalid_setting"),
    IdempotencyConflict: (409, "idempotency_conflict"),
    AlreadyExists: (409, "already_exists"),
    ReadOnly: (405, "read_only"),
    InvalidInput: (400, "invalid_input"),
    UnknownMeter: (404, "unknown_meter"),
    NotFound: (404, "not_found"),
    CapabilityError: (400, "not_recorded"),
    StoreError: (503, "store_unavailable"),
    KenshinError: (500, "internal_error"),
}

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 404, 409, 422, 503)
}


def create_app(
    store: ReadingStore,
    *,
    status: Callable[[], dict[str, Any]] | None = None,
    max_days: dict[int, int] | None = None,
    hes: HeadEnd | None = None,
    hes_lock: threading.Lock | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    broute_credentials: CredentialRegistry | str | PathLike[str] | None = None,
    read_only: bool = False,
    figures: Figures | None = None,
    security: Security | None = None,
    control: ControlSigner | None = None,
    control_limits: ControlLimits | None = None,
    campaigns: CampaignDesk | None = None,
) -> FastAPI:
    """The API over ``store``.

    ``status`` adds live information (simulated time, readings stored...) to the health response;
    ``max_days`` overrides the longest period one readings request serves, by resolution [min].
    ``broute_credentials``: the B-route credential registry or its JSON file (default: memory);
    ``read_only``: the store was opened read-only (``kenshin serve``): edits are refused;
    ``figures``: what the running MDMS reports, served at ``/metrics`` with the head-end's, the
    API's latency and the process's; ``security``: principals, tokens, the audit trail (default:
    those the store holds, and an audit trail in the store, or in memory when it is read-only);
    ``control``: the business system's control key, which signs switching commands (without
    it the API refuses them: issue 16); ``control_limits``: the switching gate's thresholds;
    ``campaigns``: the desk that runs emergency area campaigns (its gate is the API's gate).
    Every route but health, the token endpoints and the docs needs a bearer token (issue 14).
    """
    if security is None:  # a read-only store's principals are read once and kept in memory
        if read_only:
            security = Security(MemoryPrincipals(store.read_principals()), MemoryAuditSink())
        else:
            security = Security(store, store)
    limits = max_days_table(max_days)
    # the docs pages load Swagger UI and ReDoc from this package, not a CDN: utility labs are
    # often air-gapped (fastapi-offline ships both; /static-offline-docs)
    app = FastAPIOffline(
        title="kenshin",
        version=kenshin.__version__,
        description=(
            "Meter data of kenshin, Japan's next-generation smart meter system (SPEC S4). "
            "Times are JST; see docs/api.md."
        ),
        # every route's gate: authentication, rate limit, the access policy (issue 14)
        dependencies=[Depends(guard_dependency(security))],
        lifespan=_flush_audit_at_exit(security),
    )
    _install_error_handlers(app)
    # the switching gate (issue 16): with the control key and a head-end to carry commands
    gate = None if campaigns is None else campaigns.gate
    if gate is None and hes is not None and control is not None:
        book = None if read_only else store  # requests kept as they are decided
        gate = ControlGate.for_roster(store.read_meters(), control_limits, book)

    def every_figure() -> dict[str, Figure]:
        out = dict(figures() if figures is not None else {})
        if gate is not None and hes is not None:
            now_us = to_epoch_us(hes.clock.now())
            for name, kind, help_, labels, values in gate_figures(gate, now_us):
                out[name] = Figure(kind, help_, values, labels)
        if campaigns is not None:
            for name, kind, help_, labels, values in desk_figures(campaigns):
                out[name] = Figure(kind, help_, values, labels)
        return out

    metrics = ApiMetrics(every_figure)
    app.middleware("http")(metrics.middleware)
    # outermost: every request is audited with the status it got (issue 14 item 4)
    app.add_middleware(AuditMiddleware, security=security)
    app.state.security = security
    router = APIRouter(prefix=API_PREFIX, responses=_ERROR_RESPONSES)

    @router.get("/health", response_model=Health, tags=["system"])
    def health() -> dict[str, Any]:
        """Liveness, version, meter count and whatever the running system reports."""
        body: dict[str, Any] = {
            "status": "ok",
            "version": kenshin.__version__,
            "meters": store.meter_count(),
        }
        if status is not None:
            body.update(jsonable_encoder(status()))
        return body

    now = clock or (lambda: dt.datetime.now(dt.UTC))
    deadlines = Deadlines() if hes is None else deadlines_of(hes.policy)

    @router.get("/meters", response_model=MeterPage, tags=["meters"])
    def list_meters(
        request: Request,
        offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Meters to skip."),
        limit: int = Query(100, ge=1, le=1000, description="Meters per page."),
        meters: MeterFilter = Depends(meter_filter),
        state: str | None = Query(
            None,
            description="Only meters with late or missing (late), estimated or suspect "
            "(estimated) values, or open gaps (gaps) on day.",
        ),
        day: str | None = Query(None, description="The JST day state refers to, YYYY-MM-DD."),
    ) -> MeterPage:
        """The meter roster, a page at a time, in a stable order; filtered by topology,
        generation, class, samples and data state when asked. An organisation sees the supply
        points it serves only."""
        principal: Principal = request.state.principal
        own = None if principal.kind is Kind.STAFF else principal.supply_points
        if not meters.any and state is None and own is None:
            if day is not None:
                raise InvalidInput("day is the day of state; pass state too")
            rows = store.list_meters(offset, limit)
            return MeterPage(
                total=store.meter_count(),
                offset=offset,
                limit=limit,
                items=[meter_view(row) for row in rows],
            )
        roster = meters.apply(store.read_meters())
        if own is not None:
            mine = pa.array(sorted(own), pa.string())
            roster = roster.filter(pc.is_in(roster.column("supply_point_id"), mine))
        if state is not None:
            if day is None:
                raise InvalidInput(f"state={state} needs the day it refers to (day=YYYY-MM-DD)")
            table = report_table(
                store,
                state,
                parse_report_day(day),
                now_us=to_epoch_us(now()),
                meters=meters,
                deadlines=deadlines,
            )
            roster = roster.filter(pc.is_in(roster.column("meter_key"), table.column("meter_key")))
        return MeterPage(
            total=roster.num_rows,
            offset=offset,
            limit=limit,
            items=[meter_view(row) for row in roster.slice(offset, limit).to_pylist()],
        )

    def find(supply_point_id: str) -> dict[str, Any]:
        validate_supply_point_id(supply_point_id)
        row = store.find_meter(supply_point_id)
        if row is None:
            raise UnknownMeter(f"no meter with supply point id {supply_point_id}")
        return row

    @router.get("/meters/{supply_point_id}", response_model=MeterDetail, tags=["meters"])
    def get_meter(
        supply_point_id: str = Path(description="供給地点特定番号, 22 digits."),
    ) -> MeterDetail:
        """One meter with what its generation and class record and can do (SPEC M1–M7)."""
        return meter_detail_view(find(supply_point_id))

    @router.get(
        "/meters/{supply_point_id}/readings",
        response_model=Readings,
        tags=["readings"],
    )
    def get_readings(
        supply_point_id: str = Path(description="供給地点特定番号, 22 digits."),
        channel: str = Query(
            "active_forward",
            description="active_forward, active_reverse, reactive or voltage (or code 1–4).",
        ),
        resolution: str = Query("30", description="Interval length: 1, 5, 15 or 30 [min]."),
        start: str | None = Query(
            None,
            description=(
                "Exclusive start: ISO-8601 date-time (naive = JST) or date (00:00 JST); "
                "default end − 1 day."
            ),
            examples=["2026-04-01"],
        ),
        end: str | None = Query(
            None,
            description=(
                "Inclusive end, same forms as start; default start + 1 day, or the newest "
                "stored value when start is missing too."
            ),
        ),
        as_of: str | None = Query(
            None, description="Show what was known at this time (versions up to it)."
        ),
    ) -> JSONResponse:
        """Current versions of the values with ``start < interval_end <= end``."""
        chan = parse_channel(channel)
        res = parse_resolution(resolution)
        row = find(supply_point_id)

        def newest() -> dt.datetime | None:
            us = store.latest_interval_end(int(row["meter_key"]), chan, res)
            return None if us is None else from_epoch_us(us)

        spec = spec_of(row)
        if not spec.records(chan, res):  # before the period: "no values yet" would mislead
            raise CapabilityError(
                f"a generation-{int(spec.generation)} {spec.meter_class.label} meter does not "
                f"record {chan.label} at {int(res)}-min resolution; it records "
                f"{recorded_summary(spec)}"
            )
        start_ts, end_ts = parse_period(start, end, res, limits, newest)
        as_of_ts = None if as_of is None else parse_instant("as_of", as_of)
        table = store.read(
            ReadingQuery(
                meter_key=int(row["meter_key"]),
                channel=chan,
                resolution=res,
                start_us=to_epoch_us(start_ts),
                end_us=to_epoch_us(end_ts),
                as_of_us=None if as_of_ts is None else to_epoch_us(as_of_ts),
            )
        )
        # up to 17 568 values a call: build plain dicts column by column and skip per-item
        # pydantic validation; the response model above still documents the shape
        return JSONResponse(
            {
                "supply_point_id": supply_point_id,
                "channel": chan.label,
                "resolution_min": int(res),
                "unit": chan.unit,
                "start": start_ts.isoformat(),
                "end": end_ts.isoformat(),
                "as_of": None if as_of_ts is None else as_of_ts.isoformat(),
                "readings": readings_view(table, chan, res, row),
            }
        )

    router.include_router(mdms_router(store, find, now, limits, read_only))
    router.include_router(report_router(store, now, deadlines))
    router.include_router(outage_router(store, find, now))
    from kenshin.api.broute_routes import install_broute_routes  # SPEC B4

    install_broute_routes(app, router, store, broute_credentials, clock)
    if hes is not None:
        from kenshin.api.hes_routes import hes_router

        router.include_router(hes_router(hes, store, hes_lock, control, gate, campaigns))

    @app.get("/metrics", include_in_schema=False)
    def get_metrics() -> Response:
        """Prometheus text: the API and the process, the MDMS figures, the head-end's (X5)."""
        body = metrics.exposition()
        if hes is not None:
            with hes_lock or nullcontext():
                body += hes.metrics.exposition()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    from kenshin.api.security_routes import security_router

    root_routes, api_routes = security_router(security)
    router.include_router(api_routes)
    app.include_router(root_routes)
    app.include_router(router)
    return app


def _flush_audit_at_exit(security: Security) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the audit rows still buffered are written when the server stops."""

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            security.trail.flush()

    return lifespan


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """The one place errors become HTTP responses, all shaped ``{"error": {code, message}}``."""

    async def kenshin_error(request: Request, exc: Exception) -> JSONResponse:
        status, code = next(_ERROR_TABLE[c] for c in type(exc).__mro__ if c in _ERROR_TABLE)
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after_s)}
            return _error(429, "rate_limited", str(exc), headers)
        if isinstance(exc, Unauthenticated):
            challenge = 'Bearer realm="kenshin"'
            return _error(401, "unauthenticated", str(exc), {"WWW-Authenticate": challenge})
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
            message = STORE_FAILED if isinstance(exc, StoreError) else _INTERNAL
            return _error(status, code, message)
        return _error(status, code, str(exc))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for err in exc.errors():
            where, *names = [str(part) for part in err.get("loc", ())] or ["request"]
            subject = f"{where} parameter {'.'.join(names)!r}" if names else where
            problems.append(f"{subject}: {err.get('msg', 'invalid')}")
        return _error(422, "validation_error", "; ".join(problems))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = f"no such resource {request.url.path}; the API is under {API_PREFIX}/"
            return _error(404, "not_found", message + " (see /docs)")
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
            return _error(405, "method_not_allowed", message, exc.headers)
        return _error(exc.status_code, f"http_{exc.status_code}", str(exc.detail), exc.headers)

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", _INTERNAL)

    app.add_exception_handler(KenshinError, kenshin_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
