"""The inference on a hand-built topology (issue 15 item 2): two substations × two feeders × three
pole transformers × four customers, one HV customer per feeder, two collectors per feeder. Each
case states what the meters showed and which devices explain it."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.grid.topology import Topology
from kenshin.outage.inference import Seen, infer

SUBS, FEEDERS_PER_SUB, TX_PER_FEEDER, PER_TX = 2, 2, 3, 4


def _topology() -> tuple[Topology, np.ndarray]:
    feeders = SUBS * FEEDERS_PER_SUB
    n_tx = feeders * TX_PER_FEEDER
    lv_tx = np.repeat(np.arange(n_tx), PER_TX)  # 48 LV meters, 4 per transformer
    tx_feeder = np.repeat(np.arange(feeders), TX_PER_FEEDER)
    hv_feeder = np.arange(feeders)  # one HV customer per feeder, meters 48 … 51
    feeder = np.concatenate([tx_feeder[lv_tx], hv_feeder]).astype(np.int32)
    transformer = np.concatenate([lv_tx, np.full(feeders, -1)]).astype(np.int32)
    feeder_substation = (np.arange(feeders) // FEEDERS_PER_SUB).astype(np.int32)
    n = len(feeder)
    topology = Topology(
        substation=feeder_substation[feeder],
        feeder=feeder,
        transformer=transformer,
        service_drop=np.where(transformer >= 0, np.arange(n), -1).astype(np.int32),
        transformer_feeder=tx_feeder.astype(np.int32),
        transformer_kva=np.full(n_tx, 20.0),
        transformer_position=np.full(n_tx, 0.5),
        feeder_substation=feeder_substation,
        feeder_pv_propensity=np.ones(feeders),
    )
    # two collectors per feeder: transformers 0 and 1 of a feeder on one, 2 and the HV on other
    collector = np.where(
        transformer >= 0, 2 * feeder + (transformer % TX_PER_FEEDER == 2), 2 * feeder + 1
    ).astype(np.int64)
    return topology, collector


TOPOLOGY, COLLECTOR = _topology()
N = len(TOPOLOGY.feeder)


def _seen(**marks: list[int]) -> np.ndarray:
    seen = np.full(N, int(Seen.ALIVE), np.int8)
    for name, meters in marks.items():
        seen[meters] = int(Seen[name.upper()])
    return seen


def _found(seen: np.ndarray) -> set[tuple[str, int]]:
    return {(s.level, s.device) for s in infer(seen, TOPOLOGY, COLLECTOR).suspects}


def _tx(t: int) -> list[int]:
    return list(range(PER_TX * t, PER_TX * t + PER_TX))


def _feeder(f: int) -> list[int]:
    return [m for t in range(TX_PER_FEEDER * f, TX_PER_FEEDER * f + 3) for m in _tx(t)] + [48 + f]


def test_nothing_dark_nothing_found():
    result = infer(_seen(), TOPOLOGY, COLLECTOR)
    assert result.suspects == [] and len(result.to_ping) == 0


def test_a_transformer_with_two_gasps_and_two_silent_is_out():
    found = infer(_seen(gasped=[4, 5], silent=[6, 7]), TOPOLOGY, COLLECTOR)
    [suspect] = found.suspects
    assert (suspect.level, suspect.device) == ("transformer", 1)
    assert suspect.meters.tolist() == _tx(1)
    assert suspect.confidence == pytest.approx((2 + 0.5 * 2) / 4)


def test_one_live_neighbour_keeps_the_transformer_in():
    # three dark and one alive: not the transformer; the gasps are single customers
    assert _found(_seen(gasped=[4, 5], silent=[6])) == {("service_drop", 4), ("service_drop", 5)}
    assert infer(_seen(gasped=[4, 5], silent=[6]), TOPOLOGY, COLLECTOR).to_ping.tolist() == [6]


def test_a_whole_feeder_folds_into_one_event():
    found = infer(_seen(silent=_feeder(1), gasped=[12]), TOPOLOGY, COLLECTOR)
    assert {(s.level, s.device) for s in found.suspects} == {("feeder", 1)}
    assert sorted(found.suspects[0].meters.tolist()) == sorted(_feeder(1))


def test_a_substation_when_all_its_feeders_are_out():
    meters = _feeder(2) + _feeder(3)
    assert _found(_seen(silent=meters, gasped=[24, 36])) == {("substation", 1)}


def test_a_live_hv_customer_keeps_its_feeder_in():
    meters = [m for m in _feeder(0) if m != 48]  # every transformer dark, the HV customer alive
    assert _found(_seen(silent=meters, gasped=[0, 4, 8])) == {
        ("transformer", 0),
        ("transformer", 1),
        ("transformer", 2),
    }


def test_a_dead_collector_is_not_an_outage():
    behind = np.flatnonzero(COLLECTOR == 0).tolist()  # transformers 0 and 1: silent, no gasp
    found = infer(_seen(silent=behind), TOPOLOGY, COLLECTOR)
    assert {(s.level, s.device) for s in found.suspects} == {("collector", 0)}
    # the same meters with last gasps: power, not radio
    assert _found(_seen(silent=behind[1:], gasped=behind[:1])) == {
        ("transformer", 0),
        ("transformer", 1),
    }


def test_a_single_silent_meter_is_a_ping_not_an_outage():
    found = infer(_seen(silent=[9]), TOPOLOGY, COLLECTOR)
    assert found.suspects == [] and found.to_ping.tolist() == [9]
    assert _found(_seen(no_answer=[9])) == {("service_drop", 9)}  # the ping decided it


def test_unknown_meters_neither_accuse_nor_excuse():
    # a transformer whose two judged meters are dark and two unknown (nothing expected yet)
    assert _found(_seen(gasped=[4], silent=[5], unknown=[6, 7])) == {("transformer", 1)}


def test_one_pass_over_a_million_meters_is_vectorized():
    """Not a timing assertion (benchmarks do that): the pass over 1,000,000 meters finishes and
    finds the transformers made dark, so the code path at size is exercised."""
    from kenshin.grid.topology import build_topology

    rng = np.random.default_rng(1)
    topology = build_topology(np.ones(1_000_000, dtype=bool), rng)
    collector = (np.arange(1_000_000) // 500).astype(np.int64)
    seen = np.full(1_000_000, int(Seen.ALIVE), np.int8)
    out = [10, 20, 30]
    for t in out:
        members = np.flatnonzero(topology.transformer == t)
        seen[members] = int(Seen.SILENT)
        seen[members[0]] = int(Seen.GASPED)
    found = {(s.level, s.device) for s in infer(seen, topology, collector).suspects}
    assert found == {("transformer", t) for t in out}


def test_in_a_storm_silence_accuses_nothing_and_proof_still_does():
    silent_tx = _tx(1)
    assert _found(_seen(silent=silent_tx)) == {("transformer", 1)}
    storm = infer(_seen(silent=silent_tx), TOPOLOGY, COLLECTOR, require_proof=True)
    assert storm.suspects == [] and sorted(storm.to_ping.tolist()) == silent_tx
    proven = infer(
        _seen(silent=silent_tx[1:], gasped=silent_tx[:1]), TOPOLOGY, COLLECTOR, require_proof=True
    )
    assert {(s.level, s.device) for s in proven.suspects} == {("transformer", 1)}
    # a feeder whose transformers are dark, with one gasp in it, is out even in a storm
    feeder = infer(_seen(silent=_feeder(1), gasped=[12]), TOPOLOGY, COLLECTOR, require_proof=True)
    assert {(s.level, s.device) for s in feeder.suspects} == {("feeder", 1)}


def test_the_engine_enters_storm_mode_when_reads_collapse(caplog):
    from kenshin.outage.engine import OutageEngine

    engine = OutageEngine(TOPOLOGY, COLLECTOR, np.zeros(N, dtype=bool))
    heard = np.zeros(N, dtype=np.int64)  # everyone heard at t = 0 …
    minute = 60_000_000
    heard[: N // 2] = 60 * minute  # … half of them again at 60 min
    with caplog.at_level("WARNING", logger="kenshin.outage"):
        engine.evaluate(61 * minute, heard)
    assert engine.storm and "entering storm mode" in caplog.text
    assert engine.events == []  # half the fleet silent: no outage without proof
    assert len(engine.to_ping) > 0
    engine.evaluate(62 * minute, np.full(N, 62 * minute, np.int64))
    assert not engine.storm and "leaving storm mode" in caplog.text
