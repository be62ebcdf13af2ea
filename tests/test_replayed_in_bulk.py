"""`kenshin fleet` stops when the head-end's answers say it sends a period it had sent before
(a lost --state file), and not when a broker restart made it publish frames again."""

from __future__ import annotations

from kenshin.cli.service import REFUSED_IN_BULK, replayed_in_bulk

FORWARDED = 124_606
BULK = int(REFUSED_IN_BULK * FORWARDED)  # 1,246


def test_a_fleet_that_started_over_is_told() -> None:
    assert replayed_in_bulk(FORWARDED, 0, 0, FORWARDED)  # every frame refused
    assert replayed_in_bulk(0, 4 * FORWARDED, 0, FORWARDED)  # old frames: values held
    assert replayed_in_bulk(BULK + 1, 0, 0, FORWARDED)
    assert replayed_in_bulk(0, BULK + 1, 0, FORWARDED)
    # a broker restart does not hide it: far more refused than published again
    assert replayed_in_bulk(FORWARDED, 0, 2_000, FORWARDED)


def test_a_few_refusals_are_not_a_replay() -> None:
    assert not replayed_in_bulk(BULK, BULK, 0, FORWARDED)  # a forged frame here and there
    assert not replayed_in_bulk(0, 0, 0, 0)


def test_frames_published_again_after_a_broker_restart_are_not_a_replay() -> None:
    # the run CI saw: 1,929 refused (counters in the window) and 1,672 values held (older
    # frames), all of them copies of envelopes the fleet published again
    assert not replayed_in_bulk(1_929, 1_672, 2_100, FORWARDED)
    assert not replayed_in_bulk(1_929 + BULK, 50_000, 1_929, FORWARDED)
