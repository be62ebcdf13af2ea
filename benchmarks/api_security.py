"""What identity, access and audit cost per request (issue 14): the same API with and without the
gate, over the same store, the same requests, in the same run.

Two apps over one DuckDB store of N meters × 1 day of values (the wire system, simulated first):
the app as served (bearer token checked, rate limit, the policy table, the audit row appended
to the store each second) and the anchor, the same app with the gate's dependency replaced by
one that only names the principal and without the audit middleware. Requests go through
Starlette's in-process test client (no sockets), alternating between the two apps so that drift
of the machine hits both; p50 and p90 over ``--requests`` of each. Two requests: the cheapest
route with a token (``GET /api/v1/whoami``) and a point read of one meter-day of 30-min values
(``GET /api/v1/meters/{id}/readings``).

Target (issue 14): overhead ≤ 0.3 ms per request at p50.

Usage: ``python benchmarks/api_security.py [--meters 500] [--requests 3000] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi import Request

from _figures import Figure, add_json_option, figures_table, record
from kenshin.api import create_app
from kenshin.api.guard import AuditMiddleware
from kenshin.app.system import build_system
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.security.principals import Kind, Role

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

START = dt.datetime(2026, 6, 1, tzinfo=JST)
TARGET_MS = 0.3


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=500)
    parser.add_argument("--requests", type=int, default=3000)
    add_json_option(parser)
    args = parser.parse_args()
    console = Console(width=120)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(Path(tmp) / "api.duckdb")
        system = build_system(
            FleetConfig(n_meters=args.meters, start=START, seed=3),
            store=store,
            aroute="wire",
            background_writer=False,
        )
        system.run(START + dt.timedelta(days=1))
        system.mdms.flush()
        spid = str(system.fleet.population.supply_point_id[0])

        guarded = create_app(store, hes=system.hes, hes_lock=threading.Lock())
        security = guarded.state.security
        _, secret = security.add("bench", Kind.STAFF, roles=[Role.VIEWER], rate_per_s=10_000)
        token = security.token("bench", secret)[0]
        principal = security.get("bench")

        bare = create_app(store, hes=system.hes, hes_lock=threading.Lock(), security=security)
        gate = bare.router.dependencies[0].dependency

        async def name_only(request: Request) -> None:
            request.state.principal = principal

        bare.dependency_overrides[gate] = name_only
        bare.user_middleware = [m for m in bare.user_middleware if m.cls is not AuditMiddleware]

        headers = {"Authorization": f"Bearer {token}"}
        clients = {"guarded": TestClient(guarded), "bare": TestClient(bare)}
        routes = {
            "whoami": ("/api/v1/whoami", {}),
            "meter-day": (f"/api/v1/meters/{spid}/readings", {"start": "2026-06-01"}),
        }
        results: dict[tuple[str, str], list[float]] = {}
        for route, (path, params) in routes.items():
            for client in clients.values():  # warm: first calls build caches
                for _ in range(50):
                    assert client.get(path, params=params, headers=headers).status_code == 200
            for _ in range(args.requests):
                for name, client in clients.items():
                    t = time.perf_counter()
                    response = client.get(path, params=params, headers=headers)
                    results.setdefault((route, name), []).append(time.perf_counter() - t)
                    assert response.status_code == 200, response.text
        security.trail.flush()
        audited = security.trail.written
        system.close()

    figures = []
    for route in routes:
        g50, g90 = quantiles(results[(route, "guarded")])
        b50, b90 = quantiles(results[(route, "bare")])
        overhead = (g50 - b50) * 1000
        figures.append(
            Figure(
                f"GET {route}: token, rate limit, policy and audit (in-process client, "
                f"{args.requests:,} requests each)",
                f"p50 {g50 * 1000:.3f} ms, p90 {g90 * 1000:.3f} ms; overhead {overhead:.3f} ms",
                anchor=f"same app without the gate: p50 {b50 * 1000:.3f} ms, p90 {b90 * 1000:.3f}",
                ratio=f"{g50 / b50:.2f}",
                target=f"overhead ≤ {TARGET_MS} ms at p50",
                met=overhead <= TARGET_MS,
            )
        )
    console.print(figures_table(figures, f"API security overhead ({args.meters:,} meters, DuckDB)"))
    console.print(f"audit rows written: {audited:,}")
    record(args.json, figures)


if __name__ == "__main__":
    main()
