"""The A-route network model (SPEC A6): assignment, loss, latency, congestion, determinism."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.aroute.network import (
    NOT_DELIVERED,
    Delivery,
    LinkParams,
    Method,
    Network,
    NetworkConfig,
    Placement,
    bundle_by_collector,
    fifo_queue,
    parse_mix,
)
from kenshin.errors import InvalidSetting
from kenshin.fleet.population import Population, PopulationConfig, build_population

T0 = 1_775_000_000_000_000  # epoch µs
US = 1_000_000


@pytest.fixture(scope="module")
def population() -> Population:
    return build_population(PopulationConfig(n_meters=20_000), np.random.default_rng(4))


@pytest.fixture(scope="module")
def network(population: Population) -> Network:
    return Network(population, NetworkConfig(), seed=7)


def flat_placement(n: int, per_transformer: int = 10) -> Placement:
    """n LV meters on one feeder, ``per_transformer`` to a pole transformer."""
    return Placement(
        transformer=np.arange(n, dtype=np.int64) // per_transformer,
        feeder=np.zeros(n, dtype=np.int64),
        substation=np.zeros(n, dtype=np.int64),
        high_voltage=np.zeros(n, dtype=bool),
        multi_dwelling=np.zeros(n, dtype=bool),
    )


def only(method: Method, **params: object) -> NetworkConfig:
    """One method for every meter, with some parameters changed."""
    return NetworkConfig(shares={method: 1.0}, hv_method=None).with_params(method, **params)


QUIET = {  # no jitter, no latency: what is left is the channel queue
    "jitter_s": 0.0,
    "hop_latency_mean_s": 0.0,
    "backhaul_s": 0.0,
    "hop_loss": 0.0,
}


# ---- assignment -------------------------------------------------------------------------------


def test_method_shares_match_the_config(population: Population, network: Network) -> None:
    lv = population.is_low_voltage
    for method, share in NetworkConfig().shares.items():
        observed = float((network.method[lv] == method).mean())
        # whole pole transformers (≤ 20 meters) are assigned at a time
        assert observed == pytest.approx(share, abs=0.005)
    assert (network.method[~lv] == Method.CELLULAR).all()  # HV is cellular/wired by default


def test_shares_are_normalized_and_any_mix_works(population: Population) -> None:
    config = NetworkConfig.from_mix("mesh=2,plc=2")
    net = Network(population, config, seed=1)
    lv = population.is_low_voltage
    assert float((net.method[lv] == Method.PLC).mean()) == pytest.approx(0.5, abs=0.005)
    assert not (net.method[lv] == Method.CELLULAR).any()


def test_hv_meters_join_the_mix_when_asked(population: Population) -> None:
    net = Network(population, NetworkConfig(shares={Method.MESH: 1.0}, hv_method=None), seed=1)
    assert (net.method == Method.MESH).all()


def test_neighbours_share_a_method_and_plc_goes_to_flats(
    population: Population, network: Network
) -> None:
    tx = population.topology.transformer
    lv = tx >= 0
    methods_per_tx = {tuple(np.unique(network.method[tx == t])) for t in np.unique(tx[lv])[:500]}
    assert all(len(m) == 1 for m in methods_per_tx)
    flats = Placement.of(population).multi_dwelling
    plc = network.method == Method.PLC
    assert flats[plc].mean() > flats[lv].mean() + 0.1
    # cellular takes the sparse localities: pole transformers with few customers
    sizes = np.bincount(tx[lv])[tx]
    cellular_lv = lv & (network.method == Method.CELLULAR)
    assert sizes[cellular_lv].mean() < sizes[lv & (network.method == Method.MESH)].mean()


def test_collectors_group_by_locality_and_respect_their_size(
    population: Population, network: Network
) -> None:
    config = network.config
    topo = population.topology
    group = {
        Method.MESH: topo.feeder,
        Method.PLC: topo.transformer,
        Method.CELLULAR: topo.substation,
    }
    counts = np.bincount(network.collector_of, minlength=network.n_collectors)
    assert counts.min() >= 1
    for c in range(network.n_collectors):
        members = network.collector_of == c
        method = Method(int(network.collector_method[c]))
        assert (network.method[members] == method).all()
        assert len(np.unique(group[method][members])) == 1
        assert counts[c] <= config.params(method).meters_per_collector
    assert len(set(network.collector_names)) == network.n_collectors
    assert all(re.fullmatch(r"c\d{5}", name) for name in network.collector_names)


def test_collectors_split_evenly_at_their_limit() -> None:
    net = Network(flat_placement(1_001), only(Method.MESH, meters_per_collector=100), seed=1)
    counts = np.bincount(net.collector_of)
    assert len(counts) == 11
    assert counts.max() <= 100
    assert counts.min() >= 90


def test_mesh_hops_follow_the_configured_distribution(
    population: Population, network: Network
) -> None:
    mesh = network.method == Method.MESH
    hops = network.hops[mesh]
    weights = np.asarray(network.config.mesh.hop_weights)
    assert hops.min() >= 1
    assert hops.max() <= len(weights)
    observed = np.bincount(hops, minlength=len(weights) + 1)[1:] / len(hops)
    np.testing.assert_allclose(observed, weights / weights.sum(), atol=0.01)
    assert (network.hops[network.method == Method.CELLULAR] == 1).all()


# ---- loss --------------------------------------------------------------------------------------


def _binomial_ok(lost: int, n: int, p: float) -> bool:
    return abs(lost - n * p) <= 4.5 * np.sqrt(n * p * (1 - p))


def test_loss_rate_is_within_binomial_bounds() -> None:
    n = 2_000
    net = Network(flat_placement(n), only(Method.CELLULAR, hop_loss=0.02, loss_spread=0.0), seed=3)
    keys = np.tile(np.arange(n), 100)
    lost = 0
    for k in range(0, len(keys), 50_000):
        lost += int((~net.send_up(keys[k : k + 50_000], 70, T0 + k * US).delivered).sum())
    assert _binomial_ok(lost, len(keys), 0.02)


def test_loss_compounds_over_hops_and_fragments() -> None:
    config = only(Method.MESH, hop_loss=0.01, loss_spread=0.0, hop_weights=(0, 0, 1.0))
    config = config.with_params(Method.MESH, fragment_bytes=100)
    net = Network(flat_placement(1_000), config, seed=3)
    assert net.frame_loss([0], 100)[0] == pytest.approx(1 - 0.99**3)
    assert net.frame_loss([0], 250)[0] == pytest.approx(1 - 0.99**9)  # 3 fragments × 3 hops
    keys = np.tile(np.arange(1_000), 100)
    delivered = net.send_up(keys, 250, T0).delivered
    assert _binomial_ok(int((~delivered).sum()), len(keys), 1 - 0.99**9)


def test_site_quality_spreads_loss_but_keeps_the_mean() -> None:
    net = Network(flat_placement(50_000), only(Method.MESH, hop_weights=(1.0,)), seed=2)
    assert net.hop_loss.std() > 0
    assert net.hop_loss.mean() == pytest.approx(net.config.mesh.hop_loss, rel=0.05)


def test_lost_frames_have_no_arrival() -> None:
    net = Network(flat_placement(1_000), only(Method.PLC, hop_loss=0.3), seed=1)
    d = net.send_up(np.arange(1_000), 70, T0)
    assert (d.arrival_us[~d.delivered] == NOT_DELIVERED).all()
    assert (d.arrival_us[d.delivered] > T0).all()
    assert len(d.delay_us) == d.delivered.sum()


# ---- latency -----------------------------------------------------------------------------------


def test_hops_increase_latency() -> None:
    params = {**QUIET, "hop_latency_mean_s": 0.2, "capacity_bytes_per_s": 1e12}
    config = only(Method.MESH, hop_weights=(1.0,) * 8, **params)
    net = Network(flat_placement(40_000), config, seed=5)
    d = net.send_up(np.arange(40_000), 70, T0)
    mean_s = [float(d.delay_us[net.hops == h].mean()) / US for h in range(1, 9)]
    assert all(b > a for a, b in itertools.pairwise(mean_s))
    np.testing.assert_allclose(mean_s, 0.2 * np.arange(1, 9), rtol=0.1)


def test_jitter_spreads_pushes_and_a_mask_turns_it_off() -> None:
    net = Network(flat_placement(2_000), only(Method.CELLULAR, hop_loss=0.0), seed=5)
    jitter_us = net.config.cellular.jitter_s * US
    mask = np.arange(2_000) % 2 == 0
    d = net.send_up(np.arange(2_000), 70, T0, jitter=mask)
    delay = d.arrival_us - T0
    assert delay[mask].max() > jitter_us / 2
    assert delay[~mask].max() < 20 * US  # latency and backhaul only


def test_downlink_goes_through_backhaul_then_hops() -> None:
    config = only(Method.MESH, **{**QUIET, "backhaul_s": 0.5, "hop_weights": (0, 1.0)})
    net = Network(
        flat_placement(10), config.with_params(Method.MESH, hop_latency_mean_s=0.1), seed=1
    )
    d = net.send_down(np.arange(10), 40, T0)
    assert (d.arrival_us >= T0 + US // 2).all()
    assert (d.arrival_us < T0 + 5 * US).all()


# ---- congestion --------------------------------------------------------------------------------


def test_a_burst_queues_at_the_collector_for_bytes_over_capacity() -> None:
    config = only(Method.MESH, hop_weights=(1.0,), overhead_bytes=0, capacity_bytes_per_s=1_000.0)
    net = Network(flat_placement(200), config.with_params(Method.MESH, **QUIET), seed=1)
    assert net.n_collectors == 1
    d = net.send_up(np.arange(200), 500, T0)  # 100 kB at 1 kB/s
    assert (d.arrival_us.max() - T0) / US == pytest.approx(100.0, abs=0.01)
    assert (d.arrival_us.min() - T0) / US == pytest.approx(0.5, abs=0.01)
    # the channel stays busy across calls: a frame sent now waits for the burst to clear
    later = net.send_up([0], 500, T0 + 10 * US)
    assert (later.arrival_us[0] - T0) / US == pytest.approx(100.5, abs=0.01)
    net.reset_queues()
    again = net.send_up([0], 500, T0 + 10 * US)
    assert (again.arrival_us[0] - T0) / US == pytest.approx(10.5, abs=0.01)


def test_airtime_counts_overhead_on_every_hop() -> None:
    config = only(Method.MESH, hop_weights=(0, 0, 1.0), overhead_bytes=40, fragment_bytes=1_000)
    net = Network(flat_placement(10), config, seed=1)
    assert net.airtime_bytes([0], 70)[0] == (70 + 40) * 3
    assert net.airtime_bytes([0], 2_500)[0] == (2_500 + 3 * 40) * 3


def test_collectors_do_not_share_a_queue() -> None:
    config = only(Method.PLC, hop_weights=(1.0,), overhead_bytes=0, capacity_bytes_per_s=100.0)
    net = Network(
        flat_placement(20, per_transformer=10), config.with_params(Method.PLC, **QUIET), seed=1
    )
    assert net.n_collectors == 2
    d = net.send_up(np.arange(20), 100, T0)  # 1 s each, 10 per collector
    for c in range(2):
        assert (d.arrival_us[net.collector_of == c].max() - T0) / US == pytest.approx(10.0)


def _lindley(
    group: np.ndarray, start: np.ndarray, service: np.ndarray, busy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(len(group), dtype=np.int64)
    busy = busy.copy()
    for i in np.lexsort((start, group)):
        out[i] = max(start[i], busy[group[i]]) + service[i]
        busy[group[i]] = out[i]
    return out, busy


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10**9), st.integers(0, 10**8)),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.integers(-(2**62), 2 * 10**9), min_size=4, max_size=4),
)
def test_fifo_queue_is_the_lindley_recursion(
    jobs: list[tuple[int, int, int]], busy: list[int]
) -> None:
    group = np.array([j[0] for j in jobs], dtype=np.int32)
    start = np.array([j[1] for j in jobs], dtype=np.int64) + T0
    service = np.array([j[2] for j in jobs], dtype=np.int64)
    busy_until = np.array(busy, dtype=np.int64) + np.where(np.array(busy) > 0, T0, 0)
    expected, expected_busy = _lindley(group, start, service, busy_until)
    got_busy = busy_until.copy()
    np.testing.assert_array_equal(fifo_queue(group, start, service, got_busy), expected)
    np.testing.assert_array_equal(got_busy, expected_busy)


# ---- determinism, bundling, settings ------------------------------------------------------------


def _run(population: Population, seed: int) -> tuple[Network, Delivery, Delivery]:
    net = Network(population, NetworkConfig(), seed=seed)
    keys = np.arange(len(population))
    a = net.send_up(keys, 70, T0)
    b = net.send_down(keys[:500], 40, T0 + 60 * US)
    return net, a, b


def test_same_seed_same_network_and_deliveries(population: Population) -> None:
    n1, a1, b1 = _run(population, 11)
    n2, a2, b2 = _run(population, 11)
    for x, y in ((n1.method, n2.method), (n1.collector_of, n2.collector_of), (n1.hops, n2.hops)):
        np.testing.assert_array_equal(x, y)
    for x, y in ((a1, a2), (b1, b2)):
        np.testing.assert_array_equal(x.arrival_us, y.arrival_us)
        np.testing.assert_array_equal(x.delivered, y.delivered)
    _, a3, _ = _run(population, 12)
    assert not np.array_equal(a1.arrival_us, a3.arrival_us)


def test_which_pushes_arrive_does_not_depend_on_requests(population: Population) -> None:
    """Two runs of one seed push the same values, whatever the head-end asked meanwhile
    (the fault drill compares a run with a clean one): downlink frames and answers to them draw
    from a random stream of their own."""
    quiet, busy = (Network(population, NetworkConfig(), seed=11) for _ in range(2))
    keys = np.arange(quiet.n_meters)
    pushes = []
    for net, asks in ((quiet, False), (busy, True)):
        got = []
        for step in range(6):
            now = T0 + step * 300 * US
            if asks:  # re-read requests and their answers between the pushes
                down = busy.send_down(keys[step::7], 40, now)
                ok = down.delivered
                busy.send_up(keys[step::7][ok], 90, down.arrival_us[ok], jitter=False)
            got.append(net.send_up(keys, 70, now + 60 * US).delivered)
        pushes.append(np.concatenate(got))
    assert not pushes[0].all()  # some pushes are lost...
    np.testing.assert_array_equal(pushes[0], pushes[1])  # ...the same ones


def test_bundles_cover_each_delivered_frame_once(network: Network) -> None:
    d = network.send_up(np.arange(network.n_meters), 70, T0 + 3_600 * US)
    bundles = bundle_by_collector(d, window_us=10 * US)
    seen = np.concatenate([frames for _, _, frames in bundles])
    np.testing.assert_array_equal(np.sort(seen), np.flatnonzero(d.delivered))
    for collector, at_us, frames in bundles:
        assert (d.collector[frames] == collector).all()
        assert len(np.unique(d.arrival_us[frames] // (10 * US))) == 1
        assert at_us == d.arrival_us[frames].max()
    assert len(bundles) >= network.n_collectors


def test_empty_calls_are_fine(network: Network) -> None:
    d = network.send_up(np.empty(0, dtype=np.int64), 70, T0)
    assert len(d) == 0
    assert len(bundle_by_collector(d)) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mesh=0.8,cellular=0.15,plc=0.05",
            {Method.MESH: 0.8, Method.CELLULAR: 0.15, Method.PLC: 0.05},
        ),
        ("cellular", {Method.CELLULAR: 1.0}),
        (" MESH = 1 , 1:N=1", {Method.MESH: 1.0, Method.CELLULAR: 1.0}),
    ],
)
def test_parse_mix(text: str, expected: dict[Method, float]) -> None:
    assert parse_mix(text) == expected


@pytest.mark.parametrize("text", ["", "wifi=1", "mesh=lots", ","])
def test_bad_mixes_are_refused(text: str) -> None:
    with pytest.raises(InvalidSetting):
        parse_mix(text)


@pytest.mark.parametrize(
    "change",
    [
        {"hop_loss": 1.0},
        {"hop_loss": -0.1},
        {"hop_weights": ()},
        {"hop_weights": (0.0, 0.0)},
        {"hop_weights": (1.0, -1.0)},
        {"capacity_bytes_per_s": 0.0},
        {"meters_per_collector": 0},
        {"hop_latency_shape": 0.0},
        {"jitter_s": -1.0},
        {"fragment_bytes": 0},
        {"loss_spread": -0.5},
    ],
)
def test_invalid_link_parameters_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidSetting):
        NetworkConfig().with_params(Method.MESH, **change)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shares": {Method.MESH: -1.0, Method.PLC: 2.0}},
        {"shares": {Method.MESH: 0.0}},
        {"shares": {"mesh": 1.0}},
        {"locality_correlation": 1.5},
        {"hv_method": "cellular"},
    ],
)
def test_invalid_network_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidSetting):
        NetworkConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_sizes_and_placements_are_refused(network: Network) -> None:
    with pytest.raises(InvalidSetting):
        network.send_up([0, 1], [70, 0], T0)
    with pytest.raises(InvalidSetting):
        bundle_by_collector(network.send_up([0], 70, T0), window_us=0)
    p = flat_placement(5)
    with pytest.raises(InvalidSetting):
        Placement(p.transformer, p.feeder[:3], p.substation, p.high_voltage, p.multi_dwelling)


def test_default_parameters_are_valid_and_documented() -> None:
    config = NetworkConfig()
    assert sum(config.share(m) for m in Method) == pytest.approx(1.0)
    assert 2.5 < config.mesh.mean_hops < 3.5
    assert config.label == "mesh 84% · cellular 12% · plc 4%"
    assert isinstance(config.cellular, LinkParams)
    assert Method.parse("2") is Method.MESH
