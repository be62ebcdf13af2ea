"""``kenshin drill faults`` without running the drill: choosing faults, and refusing bad ones."""

from __future__ import annotations

import pytest

from kenshin.app.drill import FAULTS, parse_faults
from kenshin.cli import main
from kenshin.errors import InvalidSetting


def test_faults_are_chosen_by_name_or_worker() -> None:
    assert [f.name for f in parse_faults("worker1")] == [
        "worker1-early",
        "worker1-mid",
        "worker1-late",
    ]
    assert [f.name for f in parse_faults("broker, disk-full,broker")] == ["broker", "disk-full"]
    assert parse_faults("all") == list(FAULTS.values())
    assert {f.backend for f in parse_faults("disk-full")} == {"duckdb"}


@pytest.mark.parametrize("bad", ["worker2", "", "broker,,database", "kill"])
def test_an_unknown_fault_is_refused(bad: str) -> None:
    with pytest.raises(InvalidSetting, match="unknown fault"):
        parse_faults(bad)


def test_the_command_refuses_an_unknown_fault_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["drill", "faults", "--faults", "worker7", "--meters", "10"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown fault 'worker7'" in err
