"""The network planner (SPEC A6): duty traffic through method mixes, its report and command."""

from __future__ import annotations

import datetime as dt
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from kenshin.aroute.network import Method, NetworkConfig
from kenshin.cli.plan_network import plan_network_command, render_report
from kenshin.errors import InvalidSetting
from kenshin.hes.policy import CollectionPolicy, Duty
from kenshin.netplan import (
    DEFAULT_COMPARISON,
    MixResult,
    bar_lines,
    nines,
    plan_network,
    svg_chart,
    write_svg,
)

BAD = NetworkConfig(shares={Method.MESH: 1.0}).with_params(
    Method.MESH, hop_loss=0.06, capacity_bytes_per_s=150.0
)


@pytest.fixture(scope="module")
def default_plan() -> MixResult:
    """The issue's figure: the default mix and policy for a 10,000-meter area."""
    (result,) = plan_network(10_000, [NetworkConfig()], CollectionPolicy(), days=1, seed=1)
    return result


@pytest.fixture(scope="module")
def small_plans() -> list[MixResult]:
    return plan_network(2_000, [NetworkConfig(), BAD], CollectionPolicy(), seed=2)


def test_default_network_meets_the_a1_and_a3_deadlines(default_plan: MixResult) -> None:
    # SPEC A1: every 30-min value (LV ≤ 60 min, HV ≤ 30 min); SPEC A3: 5-min values ≤ 10 min
    assert default_plan.a1_on_time >= 0.999
    assert default_plan.a3_on_time >= 0.99
    assert default_plan.a2_on_time >= 0.99  # SPEC A2: within a few days
    assert default_plan.meters_by_method[Method.MESH] > default_plan.meters_by_method[Method.PLC]


def test_default_figures_are_plausible(default_plan: MixResult) -> None:
    # losses happen, and re-reads recover them
    assert 0.001 < default_plan.first_attempt_loss < 0.05
    assert 0 < default_plan.rereads_per_1000 < 50
    assert 10 < default_plan.p50_delay_s < 600  # the send jitter spreads pushes over 2 min
    assert default_plan.p50_delay_s <= default_plan.p99_delay_s < 3600
    assert (
        0 < default_plan.peak_collector_load < 1.0
    )  # no collector is offered more than it carries
    assert default_plan.peak_collector_bytes > 0
    assert sum(default_plan.meters_by_method.values()) == 10_000


def test_a_bad_network_misses_clearly_more(small_plans: list[MixResult]) -> None:
    good, bad = small_plans
    assert bad.a1_on_time < 0.9 < good.a1_on_time
    assert bad.a3_on_time < 0.9 < good.a3_on_time
    assert bad.a2_on_time < good.a2_on_time
    assert bad.first_attempt_loss > 5 * good.first_attempt_loss
    assert bad.rereads_per_1000 > 10 * good.rereads_per_1000
    assert bad.peak_collector_load > 1.0  # offered more than the channel carries: queues grow
    assert bad.p99_delay_s > good.p99_delay_s


def test_mixes_are_compared_on_the_same_area_and_deterministically() -> None:
    mixes = ["mesh=1", {"cellular": 1.0}, {Method.PLC: 1.0}]
    first = plan_network(800, mixes, seed=3)
    again = plan_network(800, mixes, seed=3)
    assert first == again
    assert [r.label for r in first] == ["mesh 100%", "cellular 100%", "plc 100%"]
    # PLC needs a concentrator per pole transformer; cellular one gateway
    assert first[2].collectors > first[0].collectors > first[1].collectors


def test_more_rereads_buy_back_on_time_share() -> None:
    lossy = NetworkConfig().with_params(Method.MESH, hop_loss=0.04)
    few = CollectionPolicy(a1_rereads=(dt.timedelta(minutes=50),))
    (with_few,) = plan_network(1_500, [lossy], few, seed=4)
    (with_default,) = plan_network(1_500, [lossy], CollectionPolicy(), seed=4)
    assert with_default.a1_on_time > with_few.a1_on_time


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidSetting):
        plan_network(100, [NetworkConfig()], days=0)
    with pytest.raises(InvalidSetting):
        plan_network(100, [NetworkConfig()], labels=["a", "b"])
    with pytest.raises(InvalidSetting):
        plan_network(100, ["wifi=1"])


def test_default_comparison_is_pure_methods_and_the_default_mix() -> None:
    assert len(DEFAULT_COMPARISON) == 4
    assert DEFAULT_COMPARISON[-1] == NetworkConfig()


def test_nines_scale() -> None:
    assert nines(0.9) == pytest.approx(1.0)
    assert nines(0.999) == pytest.approx(3.0)
    assert nines(1.0) == 5.0
    assert nines(0.0) == 0.0
    assert nines(math.nan) == 0.0


def test_report_table_bars_and_svg(small_plans: list[MixResult], tmp_path: Path) -> None:
    console = Console(record=True, width=220)
    render_report(small_plans, console)
    text = console.export_text()
    assert "A1 on time" in text
    assert small_plans[0].label in text
    lines = bar_lines(small_plans)
    assert len(lines) == 3 * len(small_plans)
    assert lines[0].count("█") > lines[3].count("█")  # the good mix's A1 bar is longer
    root = ET.fromstring(svg_chart(small_plans))
    assert root.tag.endswith("svg")
    rects = [e for e in root.iter() if e.tag.endswith("rect")]
    assert len(rects) == 3 * len(small_plans) + 3  # bars and the legend
    path = tmp_path / "plan.svg"
    write_svg(small_plans, path)
    assert path.read_text(encoding="utf-8").startswith("<svg")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("plan-network")(plan_network_command)

    @app.command()
    def other() -> None:  # a second command, so typer keeps the sub-command name
        pass

    return app


def test_plan_network_command(tmp_path: Path) -> None:
    svg = tmp_path / "mixes.svg"
    result = CliRunner().invoke(
        _app(),
        [
            "plan-network",
            "--meters",
            "400",
            "--mix",
            "mesh=0.9,cellular=0.1",
            "--mix",
            "plc",
            "--svg",
            str(svg),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mesh 90% · cellular 10%" in result.output
    assert "plc 100%" in result.output
    assert svg.exists()


def test_plan_network_command_refuses_a_bad_mix() -> None:
    result = CliRunner().invoke(_app(), ["plan-network", "--meters", "100", "--mix", "wifi=1"])
    assert result.exit_code == 2


def test_duties_are_all_reported(small_plans: list[MixResult]) -> None:
    assert set(small_plans[0].on_time) == set(Duty)
