"""The fault suite (issue 12): :mod:`kenshin.app.drill` in CI, against a private Mosquitto and a
private PostgreSQL cluster on their own ports, one fault per run, each run's stored values
compared with a clean run of the same seed.

Size: 2,000 meters × 1 day per run, as the issue asks for CI; 11 runs (two clean, nine faults),
about 20 s of fleet each and under 5 minutes in all on the project's 2-core machine. ``kenshin
drill faults`` runs the same at 20,000 meters by default.

Every fault must lose no value, store none twice, and make no process exit that was not told
to; after a broker or database restart the workers make progress again within 30 s. Cases
that still fail are marked with the defect behind them (see docs/reliability.md, "Fault
drill").
"""

from __future__ import annotations

import pytest

from kenshin.app.drill import FAULTS, DrillConfig, Outcome, missing_binaries, run_drill
from tests.conftest import services_required

pytestmark = pytest.mark.slow

METERS = 2000
RECOVERY_BOUND_S = 30.0

# kill -9 of the broker mid-stream: Mosquitto acknowledges a message before its next snapshot
# holds it, and drops what it takes for the workers' sessions while they are not back yet; the
# fleet publishes again what it published before a reconnect and nobody named stored
# (Backlog.resend), and what newer stored envelopes passed by (Backlog.resend_passed: the case
# lost 706 envelopes in 1 of 10 looped runs before it, 0 in 40 since). The worker cases and
# disk-full failed before 3ad0406 (a restarted worker's count taken for its predecessor's, the
# duty worker's observer session not persistent, a restarted worker's store set-up deadlocking
# on DDL). No case is marked.
KNOWN: dict[str, pytest.MarkDecorator] = {}
# at --speed max a worker down for a few wall seconds is hours of simulated time: the duty
# worker re-read what it held and the answers were stored; back, the worker's pushes (still
# inside their replay windows) made second versions of the same values (seen once: 4 rows in
# worker1-early). A worker catching up now compares its pushes with the store as answers are
# (HesWorker.catching_up). Not marked either.
TWICE: dict[str, pytest.MarkDecorator] = {}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    missing = missing_binaries()
    if missing:
        message = f"the fault drill needs {' and '.join(missing)}"
        if services_required():
            pytest.fail(f"{message}; KENSHIN_REQUIRE_SERVICES=1 demands it", pytrace=False)
        pytest.skip(message)
    # a stalled fleet gives up after 20 s without progress (the default 120 s would only make
    # a failing case slower; a database or broker outage here lasts 1 s)
    config = DrillConfig(meters=METERS, days=1, seed=3, worker_timeout_s=20)
    done = run_drill(config, status=print, on_outcome=print)
    return {o.name: o for o in done}


@pytest.mark.parametrize("backend", ["postgresql", "duckdb"])
def test_the_clean_runs_store_every_pushed_value_once(
    outcomes: dict[str, Outcome], backend: str
) -> None:
    clean = outcomes[f"clean ({backend})"]
    assert clean.exits == []
    assert clean.stored > METERS * 48  # at least a day of 30-min values per meter
    assert clean.twice == 0


def test_both_clean_runs_are_the_same_day(outcomes: dict[str, Outcome]) -> None:
    """One seed, two backends: the pushed values are the same, whatever was re-read."""
    pg, duck = outcomes["clean (postgresql)"], outcomes["clean (duckdb)"]
    assert abs(pg.stored - duck.stored) < 0.01 * pg.stored


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=KNOWN[n]) if n in KNOWN else n for n in FAULTS]
)
def test_a_fault_loses_nothing_and_stops_nothing(outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    assert o.clean is not None and o.stored > 0
    assert o.extra == 0, "the run pushed values the clean run did not: the runs differ"
    assert o.lost == 0, f"{name}: {o.lost} lost"
    assert o.exits == [], f"{name}: unexpected exits: {o.exits}"
    if FAULTS[name].kind in ("broker", "database"):
        assert o.recovery_s is not None, f"{name}: no progress after the restart"
        assert o.recovery_s <= RECOVERY_BOUND_S


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=TWICE[n]) if n in TWICE else n for n in FAULTS]
)
def test_a_fault_stores_nothing_twice(outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    assert o.twice == 0, f"{name}: {o.twice} rows beyond one per slot"
