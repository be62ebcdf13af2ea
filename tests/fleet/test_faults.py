"""Faults in the simulated world (issue 15 item 1; SPEC R1, R2) over the wire A-route, on a
lossless network so every expectation is exact: a pole transformer and a service drop lose power
(their meters count nothing, send nothing, answer nothing, gasp sometimes, report the restore
always, and the head-end re-reads zeros for the dark slots afterwards), a customer's breaker trips
(no event, zeros pushed on time), a collector fails (meters fine, values re-read later)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kenshin.app.system import EmbeddedSystem, build_system
from kenshin.aroute.network import Method, NetworkConfig
from kenshin.core.channels import Channel
from kenshin.core.events import EventCode
from kenshin.core.quality import Source
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.fleet.faults import Fault, FaultSchedule, Level
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.mdms.store import ReadingQuery

START = dt.datetime(2026, 6, 1, tzinfo=JST)
ONE = START + dt.timedelta(hours=1)
TWO = START + dt.timedelta(hours=2)
THREE = START + dt.timedelta(hours=3)
US30 = Resolution.MIN30.microseconds


def _lossless() -> NetworkConfig:
    config = NetworkConfig()
    for method in Method:
        config = config.with_params(method, hop_loss=0.0)
    return config


def _plan(n: int = 300) -> tuple[FleetConfig, dict[str, object]]:
    """Faults chosen on the fleet's own topology: one transformer, the service drop of a meter
    elsewhere, the breaker of a third."""
    topology = Fleet(FleetConfig(n_meters=n, start=START, seed=9)).population.topology
    lv = np.flatnonzero(topology.transformer >= 0)
    transformer = int(topology.transformer[lv[0]])
    others = lv[topology.transformer[lv] != transformer]
    drop, breaker = int(others[0]), int(others[1])
    faults = (
        Fault(Level.TRANSFORMER, transformer, ONE, TWO),
        Fault(Level.SERVICE_DROP, drop, ONE, THREE),
        Fault(Level.BREAKER, breaker, ONE, TWO),
    )
    config = FleetConfig(n_meters=n, start=START, seed=9, faults=faults)
    dark = np.flatnonzero(topology.transformer == transformer)
    return config, {"dark": dark, "drop": drop, "breaker": breaker}


@pytest.fixture(scope="module")
def faulted() -> tuple[EmbeddedSystem, dict[str, object]]:
    config, chosen = _plan()
    system = build_system(config, aroute="wire", network=_lossless(), background_writer=False)
    system.run(START + dt.timedelta(hours=6))
    system.mdms.flush()
    return system, chosen


def _values(system: EmbeddedSystem, key: int) -> tuple[list[int | None], list[int]]:
    """(30-min forward values of slots ending 00:30 … 04:00, their sources)."""
    table = system.store.read(
        ReadingQuery(
            key,
            Channel.ACTIVE_FORWARD,
            Resolution.MIN30,
            to_epoch_us(START),
            to_epoch_us(START) + 8 * US30,
        )
    )
    return table.column("value").to_pylist(), table.column("source").to_pylist()


def test_the_schedule_darkens_exactly_the_meters_below_the_device() -> None:
    fleet = Fleet(FleetConfig(n_meters=500, start=START, seed=9))
    topology = fleet.population.topology
    feeder = int(topology.feeder[0])
    schedule = FaultSchedule(
        (Fault(Level.FEEDER, feeder, ONE, TWO), Fault(Level.BREAKER, 3, ONE)), topology
    )
    at = to_epoch_us(ONE)
    assert np.array_equal(schedule.dark(at), topology.feeder == feeder)
    assert not schedule.dark(at - 1).any() and not schedule.dark(to_epoch_us(TWO)).any()
    assert schedule.breaker_open(at).tolist().count(True) == 1 and schedule.breaker_open(at)[3]
    assert not schedule.dark(at)[3] or topology.feeder[3] == feeder  # a breaker is no outage
    with pytest.raises(InvalidSetting, match="no transformer 99999"):
        FaultSchedule((Fault(Level.TRANSFORMER, 99_999, ONE, TWO),), topology)
    with pytest.raises(InvalidSetting, match="ends after it starts"):
        Fault(Level.FEEDER, 0, TWO, ONE)


def test_dark_meters_send_nothing_and_report_the_restore(faulted) -> None:
    system, chosen = faulted
    dark = [*chosen["dark"], chosen["drop"]]  # type: ignore[misc]
    events = system.store.read_events(to_epoch_us(START), to_epoch_us(START) + 6 * 2 * US30)
    rows = list(
        zip(
            events.column("meter_key").to_pylist(),
            events.column("code").to_pylist(),
            events.column("occurred").cast("int64").to_pylist(),
            strict=True,
        )
    )
    restores = {k: at for k, c, at in rows if c == int(EventCode.POWER_RESTORE)}
    gasps = {k: at for k, c, at in rows if c == int(EventCode.POWER_FAIL)}
    assert sorted(restores) == sorted(int(k) for k in dark)  # every one, lossless network
    assert restores[chosen["drop"]] == to_epoch_us(THREE)
    assert all(restores[int(k)] == to_epoch_us(TWO) for k in chosen["dark"])  # type: ignore[attr-defined]
    assert set(gasps) <= set(restores) and all(at == to_epoch_us(ONE) for at in gasps.values())
    radio = system.field.radio  # type: ignore[union-attr]
    assert len(gasps) == radio.last_gasps < len(dark) or len(dark) < 4  # some, not all
    assert chosen["breaker"] not in restores  # the customer's breaker is not the grid


def test_the_dark_slots_are_re_read_as_zeros_and_the_registers_stand_still(faulted) -> None:
    system, chosen = faulted
    for key in chosen["dark"]:  # type: ignore[attr-defined]
        values, sources = _values(system, int(key))
        assert len(values) == 8  # every slot is there: re-read after the restore
        assert values[2:4] == [0, 0]  # 01:00–02:00 dark: the meter counted nothing
        # dark from 01:00: neither the slot just ended nor the dark one was pushed: re-read
        assert sources[1] == sources[2] == int(Source.REREAD)
        # the power is back at 02:00: the (empty) slot just ended goes out as usual
        assert sources[3] == sources[4] == int(Source.METER_PUSH)
    values, sources = _values(system, int(chosen["drop"]))  # type: ignore[call-overload]
    assert values[2:6] == [0, 0, 0, 0]
    # the slot ending 01:00 was past its last scheduled re-read (01:50) when the power came
    # back at 03:00, the next late one is at 07:00: the restore event itself asked for it
    assert len(values) == 8 and sources[1] == int(Source.REREAD)


def test_a_tripped_breaker_sends_zeros_on_time(faulted) -> None:
    system, chosen = faulted
    values, sources = _values(system, int(chosen["breaker"]))  # type: ignore[call-overload]
    assert values[2:4] == [0, 0]
    assert sources[2] == sources[3] == int(Source.METER_PUSH)  # the meter had power: pushed


def test_a_failed_collector_silences_meters_that_keep_counting() -> None:
    probe = build_system(
        FleetConfig(n_meters=300, start=START, seed=9), aroute="wire", network=_lossless()
    )
    field = probe.field
    assert field is not None
    # a small collector: one with hundreds of meters re-reads them over hours, as the head-end
    # sends at most 16 commands at a time through one collector
    sizes = np.bincount(field.network.collector_of)
    collector = int(np.flatnonzero(sizes >= 3)[np.argmin(sizes[sizes >= 3])])
    behind = np.flatnonzero(field.network.collector_of == collector)
    probe.close()
    config = FleetConfig(
        n_meters=300, start=START, seed=9, faults=(Fault(Level.COLLECTOR, collector, ONE, TWO),)
    )
    system = build_system(config, aroute="wire", network=_lossless(), background_writer=False)
    system.run(START + dt.timedelta(hours=5))
    system.mdms.flush()
    counted = 0
    for key in behind:  # pushes sent at 01:00 and 01:30 reached no one; 02:00 got through
        values, sources = _values(system, int(key))
        assert len(values) == 8 and sources[1] == sources[2] == int(Source.REREAD)
        assert sources[3] == int(Source.METER_PUSH)
        counted += int(values[1] or 0) + int(values[2] or 0)
    assert counted > 0  # the meters went on counting
    events = system.store.read_events(to_epoch_us(START), to_epoch_us(START) + 10 * US30)
    assert events.num_rows == 0  # no power event: the power never failed
    system.close()


def test_the_direct_path_refuses_faults() -> None:
    config, _ = _plan(100)
    with pytest.raises(InvalidSetting, match="need the wire A-route"):
        build_system(config, aroute="direct")
