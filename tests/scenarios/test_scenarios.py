"""The scenario suite (issue: MDMS): every ``*.toml`` here runs on DuckDB and on PostgreSQL,
meets its expectations on each, and both backends show exactly the same readings, versions,
gaps and edits afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mdms.conftest import Backend
from tests.scenarios.runner import SCENARIOS, Scenario, load


def run(path: Path, backend: Backend, tmp: Path) -> Scenario:
    spec = load(path)
    scenario = Scenario(spec, backend.open(), tmp)
    scenario.run()
    for expect in spec.get("expect", []):
        scenario.check(expect)
    return scenario


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_gives_the_same_results_on_both_backends(path: Path, tmp_path: Path) -> None:
    dumps = {}
    for name in ("duckdb", "postgresql"):
        backend = Backend(name, tmp_path / name)
        (tmp_path / name).mkdir()
        try:
            dumps[name] = run(path, backend, tmp_path / name).dump()
        finally:
            backend.cleanup()
    assert dumps["duckdb"] == dumps["postgresql"]


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 10
