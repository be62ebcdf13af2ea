"""The outage engine over the simulated world (issue 15): the wire A-route on a lossless network,
faults scheduled, the engine evaluated after every 5-minute step on what the head-end heard. A
pole transformer's outage is found, confirmed, dated back to its start and restored; a tripped
breaker and a healthy fleet raise nothing; a feeder absorbs its transformers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kenshin.app.system import build_system
from kenshin.core.timeslots import to_epoch_us
from kenshin.fleet.faults import Fault, Level
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.outage.engine import OutageEngine, State
from tests.fleet.test_faults import ONE, START, THREE, TWO, _lossless, _plan

MIN = 60_000_000


def _run(config: FleetConfig, hours: float) -> tuple[OutageEngine, list[tuple[int, int]]]:
    system = build_system(config, aroute="wire", network=_lossless(), background_writer=False)
    field, hes = system.field, system.hes
    assert field is not None and hes is not None
    engine = OutageEngine(
        system.fleet.population.topology, field.network.collector_of, system.fleet.realtime
    )
    out: list[tuple[int, int]] = []  # (now, customers out)

    def evaluate(done: int, total: int) -> None:
        engine.power_events(hes.power_events)
        hes.power_events.clear()
        now = system.fleet.meters.now_us
        engine.evaluate(now, hes.heard_us)
        out.append((now, engine.customers_out()))

    system.run(START + dt.timedelta(hours=hours), evaluate)
    system.close()
    return engine, out


def test_a_transformer_outage_is_found_confirmed_and_restored() -> None:
    config, chosen = _plan()
    engine, _ = _run(config, 5)
    dark = sorted(int(k) for k in chosen["dark"])  # type: ignore[attr-defined]
    transformer = int(Fleet(config).population.topology.transformer[dark[0]])
    events = [e for e in engine.events if e.merged_into is None]
    [tx] = [e for e in events if e.level == "transformer"]
    assert tx.device == transformer and sorted(tx.meters.tolist()) == dark
    assert tx.state is State.RESTORED
    assert tx.confirmed_us is not None
    # dated back to the first evidence, found and confirmed within the A1 interval
    assert to_epoch_us(ONE) <= tx.started_us <= to_epoch_us(ONE) + 45 * MIN
    assert tx.confirmed_us - to_epoch_us(ONE) <= 60 * MIN
    assert tx.restored_us is not None
    assert to_epoch_us(TWO) <= tx.restored_us <= to_epoch_us(TWO) + 15 * MIN
    # the breaker trip is no outage; nothing else was reported
    others = [e for e in events if e is not tx]
    assert all(e.level == "service_drop" for e in others)
    assert all(int(e.device) == chosen["drop"] for e in others)
    for drop in others:  # the service drop, found when its last gasp came
        assert drop.state is State.RESTORED
        assert drop.restored_us is not None and drop.restored_us >= to_epoch_us(THREE)


def test_a_healthy_fleet_raises_nothing() -> None:
    engine, out = _run(FleetConfig(n_meters=300, start=START, seed=9), 3)
    assert engine.events == [] and max(n for _, n in out) == 0


def test_a_feeder_absorbs_its_transformers_and_customers_are_counted_once() -> None:
    probe = Fleet(FleetConfig(n_meters=400, start=START, seed=9))
    topology = probe.population.topology
    feeder = int(topology.feeder[0])
    members = np.flatnonzero(topology.feeder == feeder)
    config = FleetConfig(
        n_meters=400, start=START, seed=9, faults=(Fault(Level.FEEDER, feeder, ONE, TWO),)
    )
    engine, out = _run(config, 3)
    top = [e for e in engine.events if e.merged_into is None]
    [event] = top
    assert (event.level, event.device) == ("feeder", feeder)
    assert sorted(event.meters.tolist()) == sorted(members.tolist())
    assert event.state is State.RESTORED
    # what was found first, if anything (transformers with two gasps, single gasps), folded
    # into it
    merged = [e for e in engine.events if e.merged_into == event.event_id]
    assert all(e.level in ("transformer", "service_drop") for e in merged)
    assert [e for e in engine.events if e.merged_into is None] == [event]
    assert all(set(e.meters.tolist()) <= set(members.tolist()) for e in merged)
    assert event.started_us == to_epoch_us(ONE)  # dated back to the first last gasp
    # within the A1 hour
    assert event.confirmed_us is not None and event.confirmed_us <= to_epoch_us(ONE) + 60 * MIN
    assert event.restored_us is not None and event.restored_us >= to_epoch_us(TWO)
    assert event.timeline[-1][1] == "restored"  # all its meters reported their restore
    assert max(n for _, n in out) == len(members)  # never more customers than there are


def test_the_running_system_stores_events_and_the_api_serves_them() -> None:
    import warnings

    from kenshin.api import create_app
    from kenshin.security.principals import Role
    from tests.api.auth import authorized

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    config, chosen = _plan()
    system = build_system(
        config, aroute="wire", network=_lossless(), background_writer=False, outages=True
    )
    system.run(START + dt.timedelta(hours=5))
    system.mdms.flush()
    app = create_app(system.store, clock=lambda: START + dt.timedelta(hours=5))
    client = authorized(TestClient(app), roles=[Role.VIEWER])
    body = client.get("/api/v1/outages").json()
    levels = {item["level"] for item in body["items"]}
    assert "transformer" in levels and body["customers_out"] == 0  # all restored by 05:00
    [tx] = [item for item in body["items"] if item["level"] == "transformer"]
    assert tx["state"] == "restored" and tx["started"].startswith("2026-06-01T01:")
    one = client.get(f"/api/v1/outages/{tx['event_id']}").json()
    pop = system.fleet.population
    expected = sorted(str(pop.supply_point_id[int(k)]) for k in chosen["dark"])  # type: ignore[attr-defined]
    assert sorted(one["supply_point_ids"]) == expected
    assert [t["what"].split(":")[0] for t in one["timeline"]][-1] == "restored"
    spid = expected[0]
    mine = client.get(f"/api/v1/meters/{spid}/outages").json()["outages"]
    assert [o["event_id"] for o in mine] == [tx["event_id"]]
    assert client.get("/api/v1/outages/99999").status_code == 404
    # every error is one clear JSON line
    for path, params, status in (
        ("/api/v1/outages/99999", {}, 404),
        ("/api/v1/outages/0", {}, None),
        ("/api/v1/outages/abc", {}, None),
        ("/api/v1/outages", {"level": "lateral"}, 400),
        ("/api/v1/outages", {"start": "yesterday"}, 400),
        ("/api/v1/outages", {"start": "2026-06-02T00:00+09:00", "end": "2026-06-01"}, 400),
        ("/api/v1/outages", {"device": -1}, None),
        ("/api/v1/meters/00000000000000000000000/outages", {}, None),
        ("/api/v1/meters/0300111999999999999999/outages", {}, 404),
    ):
        reply = client.get(path, params=params)
        assert reply.status_code == status if status else 400 <= reply.status_code < 500
        body_of = reply.json()
        error = body_of["error"]
        assert error["code"] and error["message"] and "\n" not in error["message"], body_of
    assert client.get("/api/v1/outages", params={"state": "gone"}).status_code == 400
    assert client.get("/api/v1/outages", params={"level": "transformer"}).json()["total"] == 1
    # the day's reliability indices against the simulated truth: the transformer's customers
    # 01:00–02:00 and the drop 01:00–03:00, each interrupted once
    indices = client.get("/api/v1/outages/indices", params={"day": "2026-06-01"}).json()
    whole = indices["total"]
    assert whole["customers_served"] == config.n_meters
    assert whole["customers_interrupted"] == len(expected) + 1
    truth_minutes = 60 * len(expected) + 120
    assert abs(whole["customer_minutes"] - truth_minutes) <= 0.15 * truth_minutes
    assert whole["saifi"] == pytest.approx((len(expected) + 1) / config.n_meters, abs=1e-6)
    [area] = indices["items"]  # one utility area in this fleet
    assert area["customers_interrupted"] == whole["customers_interrupted"]
    by_feeder = client.get(
        "/api/v1/outages/indices", params={"day": "2026-06-01", "by": "feeder"}
    ).json()["items"]
    assert sum(i["customers_served"] for i in by_feeder) == config.n_meters
    assert sum(i["customers_interrupted"] for i in by_feeder) == len(expected) + 1
    quiet = client.get("/api/v1/outages/indices", params={"day": "2026-06-02"}).json()
    assert quiet["total"]["customers_interrupted"] == 0 and quiet["total"]["saidi_minutes"] == 0
    for bad in ({"by": "county"}, {"day": "June"}, {"day": "2026-13-01"}):
        reply = client.get("/api/v1/outages/indices", params=bad)
        assert reply.status_code == 400 and reply.json()["error"], bad
    area_code = int(system.store.read_meters().column("area")[0].as_py())
    assert area["area"] == area_code
    in_area = client.get("/api/v1/outages", params={"area": area_code}).json()
    assert in_area["total"] == body["total"]
    assert (
        client.get("/api/v1/outages", params={"area": (area_code + 1) % 256}).json()["total"] == 0
    )
    assert client.get("/api/v1/outages", params={"area": 999}).status_code in (400, 422)
    # what /metrics shows of it (kenshin up serves these figures)
    from kenshin.app.figures import outage_figures

    figures = outage_figures(system.outages)
    assert figures["kenshin_outage_customers_out"].values == {(): 0}
    confirmed = figures["kenshin_outage_events_confirmed"].values[()]
    assert confirmed == len([e for e in system.outages.engine.events if e.confirmed_us])  # type: ignore[union-attr]
    assert confirmed >= 1 and figures["kenshin_outage_events_open"].values == {}
    latency = figures["kenshin_outage_detection_latency_seconds"].values
    tx_event = next(e for e in system.outages.engine.events if e.event_id == tx["event_id"])  # type: ignore[union-attr]
    assert tx_event.confirmed_us is not None
    assert latency[("transformer", "0.5")] == (tx_event.confirmed_us - tx_event.started_us) / 1e6
    assert 0 < latency[("transformer", "0.5")] <= 3600
    system.close()


def test_without_last_gasps_pings_decide() -> None:
    """No meter gasps (all last gasps lost): silence alone is not an outage, so the engine pings;
    the pings that time out find the service drop and confirm the transformer."""
    config, chosen = _plan()
    system = build_system(
        config, aroute="wire", network=_lossless(), background_writer=False, outages=True
    )
    assert system.field is not None and system.outages is not None
    system.field.radio.last_gasp_share[:] = 0.0
    system.run(START + dt.timedelta(hours=4))
    engine = system.outages.engine
    top = [e for e in engine.events if e.merged_into is None]
    found = {(e.level, int(e.device)) for e in top}
    dark = sorted(int(k) for k in chosen["dark"])  # type: ignore[attr-defined]
    transformer = int(system.fleet.population.topology.transformer[dark[0]])
    assert found == {("transformer", transformer), ("service_drop", int(chosen["drop"]))}  # type: ignore[call-overload]
    assert system.outages.pings_sent > 0
    drop = next(e for e in top if e.level == "service_drop")
    assert drop.confirmed_us is not None and drop.state is State.RESTORED
    assert any("confirmed" in what for _, what in drop.timeline)
    # dated back to the first push it missed (no gasp to date it by)
    assert to_epoch_us(ONE) <= drop.started_us <= to_epoch_us(ONE) + 45 * MIN
    system.close()


def test_a_drop_still_dark_after_its_feeder_came_back_is_a_nested_event() -> None:
    probe = Fleet(FleetConfig(n_meters=400, start=START, seed=9))
    topology = probe.population.topology
    feeder = int(topology.feeder[0])
    members = np.flatnonzero(topology.feeder == feeder)
    lv = members[topology.transformer[members] >= 0]
    drop = int(lv[5])
    faults = (
        Fault(Level.FEEDER, feeder, ONE, TWO),
        Fault(Level.SERVICE_DROP, drop, ONE, THREE),  # the storm took this drop down too
    )
    config = FleetConfig(n_meters=400, start=START, seed=9, faults=faults)
    system = build_system(
        config, aroute="wire", network=_lossless(), background_writer=False, outages=True
    )
    system.run(START + dt.timedelta(hours=4))
    assert system.outages is not None
    events = system.outages.engine.events
    [parent] = [e for e in events if e.level == "feeder"]
    nested = [e for e in events if e.nested_in == parent.event_id]
    assert [(e.level, int(e.device)) for e in nested] == [("service_drop", drop)]
    [child] = nested
    assert child.started_us == parent.started_us  # dated back to the parent's start
    assert parent.state is State.RESTORED and parent.restored_us is not None
    assert parent.restored_us < to_epoch_us(TWO) + 15 * MIN  # the feeder came back at 02:00
    assert child.state is State.RESTORED and child.restored_us is not None
    assert child.restored_us >= to_epoch_us(THREE)  # the drop only at 03:00
    # never counted twice: while the drop was nested, the feeder was closed
    assert not (parent.restored_us > child.confirmed_us)  # type: ignore[operator]
    system.close()


def test_one_control_per_collector_turns_round_its_live_meters() -> None:
    from kenshin.app.outages import control_meters

    collector_of = np.array([2, 0, 2, 1, 2, 0, 1], np.int64)
    alive = np.array([True, True, True, False, True, False, False])
    # behind collector 2 the live meters are 0, 2, 4; behind 0 only 1; behind 1 none
    asked = np.array([0, 1, 2], np.int64)
    assert control_meters(alive, collector_of, asked, 0).tolist() == [1, 0]
    assert control_meters(alive, collector_of, asked, 1).tolist() == [1, 2]
    assert control_meters(alive, collector_of, asked, 5).tolist() == [1, 4]
    assert control_meters(alive, collector_of, np.array([2], np.int64), 3).tolist() == [0]
