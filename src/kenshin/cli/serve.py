"""``kenshin serve`` (the HTTP API over an existing store) and ``kenshin up`` (the live system in
one process)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kenshin.app.stores import StoreMode, open_store
from kenshin.cli.options import (
    UP_STORE,
    AreaOpt,
    DbOpt,
    HostOpt,
    MetersOpt,
    PortOpt,
    PostgresOpt,
    SeedOpt,
    Send15Opt,
    SpeedOpt,
    StoreOpt,
    UpStoreOpt,
    check_port_free,
    console,
    parse_area,
    store_location,
)


def serve(
    store: StoreOpt = None,
    db: DbOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    postgres: PostgresOpt = None,
    broute_credentials: Annotated[
        Path | None,
        typer.Option(help="B-route credentials file (default: kenshin-broute.json by the DB)."),
    ] = None,
) -> None:
    """Serve the HTTP API over an existing store (read-only)."""
    import uvicorn

    from kenshin.api.app import create_app
    from kenshin.app.access import ensure_local_admin, token_hint
    from kenshin.broute.credentials import DEFAULT_CREDENTIALS_FILE
    from kenshin.security.audit import MemoryAuditSink
    from kenshin.security.service import MemoryPrincipals, Security

    location = store_location(store, db, postgres)
    check_port_free(host, port)
    opened = open_store(location, StoreMode.READ_ONLY)
    console.print(
        f"serving {location.describe()} on http://{host}:{port}  "
        f"(API docs: http://{host}:{port}/docs)"
    )
    try:
        # SPEC B4: the credentials issued over the API are kept next to the store
        credentials = broute_credentials or location.directory / DEFAULT_CREDENTIALS_FILE
        # a read-only store: its principals are read once and kept in memory with the local
        # admin (secret kept next to the store), and the audit trail is kept in memory
        security = Security(MemoryPrincipals(opened.read_principals()), MemoryAuditSink())
        admin = ensure_local_admin(security, location.directory)
        if admin.registered:
            console.print(token_hint(admin, f"http://{host}:{port}"), soft_wrap=True)
        app_ = create_app(opened, broute_credentials=credentials, read_only=True, security=security)
        uvicorn.run(app_, host=host, port=port, log_level="warning")
    finally:
        opened.close()


def up(
    meters: MetersOpt = 2000,
    speed: SpeedOpt = 60.0,
    store: UpStoreOpt = None,
    db: DbOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    seed: SeedOpt = 1,
    backfill_hours: Annotated[
        int, typer.Option(min=0, max=24 * 31, help="Hours simulated at once before going live.")
    ] = 24,
    area: AreaOpt = "tokyo",
    postgres: PostgresOpt = None,
    send_15min: Send15Opt = False,
    broute_meters: Annotated[
        int,
        typer.Option(
            min=0,
            max=1000,
            help="Also serve the first N meters of the same fleet over the B-route (ECHONET "
            "Lite on UDP): a HEMS reads the registers the A-route delivers.",
        ),
    ] = 0,
    broute_bind: Annotated[
        str, typer.Option(help="Address of the first B-route node (loopback: one per node).")
    ] = "127.0.0.1",
    broute_port: Annotated[
        int, typer.Option(min=0, max=65535, help="UDP port of the B-route nodes (ECHONET: 3610).")
    ] = 3610,
    wisun: Annotated[
        str | None,
        typer.Option(
            help="Also a virtual Wi-SUN module (SKSTACK on a pty) in front of this meter; it "
            "takes the B-route credentials the API issues at once."
        ),
    ] = None,
) -> None:
    """Run the live system in one process: fleet in accelerated time, HES, MDMS and the API,
    and with --broute-meters the B-route of the same meters. The store is recreated at start
    (with PostgreSQL, the schema kenshin_up)."""
    from kenshin.cli.live import run_live

    location = store_location(store, db, postgres, default=UP_STORE)
    check_port_free(host, port)
    run_live(
        meters=meters,
        speed=speed,
        store=location,
        host=host,
        port=port,
        seed=seed,
        backfill_hours=backfill_hours,
        area=parse_area(area),
        send_15min=send_15min,
        console=console,
        broute_meters=broute_meters,
        broute_bind=broute_bind,
        broute_port=broute_port,
        wisun=wisun,
    )
