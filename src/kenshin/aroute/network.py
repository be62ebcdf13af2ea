"""The A-route communication network model (SPEC A6): 1:N cellular, Wi-SUN RF mesh and PLC.

SPEC A6: "Communication methods 1:N (cellular), multi-hop (RF mesh) and PLC, and combinations, are
to be compared and chosen per region." Each meter gets a method, a collector and a hop count; frames
then travel vectorized, many meters per call::

    uplink    meter ─jitter─► [collector channel queue] ─hops─► collector ─backhaul─► HES
    downlink  HES ─backhaul─► [collector channel queue] ─hops─► meter

- **Loss** per attempt: every hop loses each link frame (fragment) with the meter's per-hop loss,
  the residual loss after link-layer retries. A message of ``f`` fragments over ``h`` hops arrives
  with probability ``(1 − p)^(f·h)``. The meter does not retry on its own; the head-end's re-reads
  (:mod:`kenshin.hes.policy`) do.
- **Latency** per hop is gamma-distributed, so the sum over ``h`` hops is one gamma draw.
- **Congestion**: a collector's shared channel carries ``capacity_bytes_per_s``. Each frame occupies
  it for ``(size + overhead · fragments) · hops / capacity`` seconds (a mesh relays every hop on
  the same channel); frames are served first come, first served, and each collector remembers when
  its channel is next free across calls, so call in time order.

Pure: numpy only, no I/O, no clock (times are epoch µs passed in), randomness from seeded
generators. The same seed and the same sequence of calls give the same deliveries.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from kenshin.core.customers import CustomerType
from kenshin.errors import InvalidSetting

IntArray = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NOT_DELIVERED = np.iinfo(np.int64).max  # arrival_us of a frame that was lost
_US = 1_000_000
_TAG_BUILD, _TAG_SEND, _TAG_REQUESTED = 0xA6, 0xA7, 0xA8


class Method(IntEnum):
    CELLULAR = 1  # 1:N: each meter talks to a public cellular base station
    MESH = 2  # multi-hop: Wi-SUN 920 MHz RF mesh through neighbour meters to a pole collector
    PLC = 3  # power-line carrier to a concentrator at the pole transformer or building

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: int | str) -> Method:
        text = str(value).strip()
        if text.isdigit() and int(text) in cls._value2member_map_:
            return cls(int(text))
        aliases = {"1:n": cls.CELLULAR, "multihop": cls.MESH, "multi-hop": cls.MESH}
        method = aliases.get(text.lower()) or cls.__members__.get(text.upper())
        if method is None:
            raise InvalidSetting(f"unknown communication method {value!r}: cellular, mesh or plc")
        return method


@dataclass(frozen=True, slots=True)
class LinkParams:
    """One method's parameters. Units are in the names: [s], [bytes], [bytes/s]."""

    hop_weights: tuple[float, ...]  # P(hops = 1, 2, …)
    hop_loss: float  # per hop per link frame, after link-layer retries
    loss_spread: float  # σ of a per-meter lognormal (mean 1) multiplier of hop_loss: site quality
    hop_latency_mean_s: float  # per hop, gamma-distributed
    hop_latency_shape: float  # gamma shape k (1 = exponential; larger = tighter)
    backhaul_s: float  # collector ↔ HES, fixed
    meters_per_collector: int
    capacity_bytes_per_s: float  # the collector's shared channel
    overhead_bytes: int  # headers per link frame per hop (MAC, 6LoWPAN/IP/UDP, ...)
    fragment_bytes: int  # payload per link frame; longer messages are fragmented
    jitter_s: float  # pushes start a uniform 0 … jitter after the trigger (no synchronized burst)

    def __post_init__(self) -> None:
        w = self.hop_weights
        if not w or any(x < 0 for x in w) or sum(w) <= 0:
            raise InvalidSetting("hop weights must be non-negative and not all zero")
        if not 0.0 <= self.hop_loss < 1.0:
            raise InvalidSetting(f"hop loss must be within 0..1, got {self.hop_loss}")
        checks = {
            "loss spread": self.loss_spread >= 0,
            "hop latency": self.hop_latency_mean_s >= 0,
            "latency shape": self.hop_latency_shape > 0,
            "backhaul latency": self.backhaul_s >= 0,
            "meters per collector": self.meters_per_collector >= 1,
            "collector capacity": self.capacity_bytes_per_s > 0,
            "frame overhead": self.overhead_bytes >= 0,
            "fragment size": self.fragment_bytes >= 1,
            "send jitter": self.jitter_s >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise InvalidSetting(f"out of range: {', '.join(bad)}")

    @property
    def mean_hops(self) -> float:
        w = np.asarray(self.hop_weights)
        return float((w * np.arange(1, len(w) + 1)).sum() / w.sum())


# LTE-M / LTE Cat-1 modules on a public network. Outages of coverage (basements, meter rooms)
# make the per-meter spread wide. Latency includes the RRC connection set-up from idle (0.3-1 s).
# The "collector" is the HES-side gateway (APN termination) that bundles frames; 10 Mbit/s.
CELLULAR_DEFAULT = LinkParams(
    hop_weights=(1.0,),
    hop_loss=0.004,
    loss_spread=1.0,
    hop_latency_mean_s=0.8,
    hop_latency_shape=1.5,
    backhaul_s=0.02,
    meters_per_collector=20_000,
    capacity_bytes_per_s=1_250_000.0,
    overhead_bytes=60,
    fragment_bytes=1_400,
    jitter_s=120.0,  # spreads RRC attaches so a cell is not hit by every meter in the same second
)

# Wi-SUN FAN-style 920 MHz mesh. PHY 50-300 kbit/s; after CSMA, channel hopping, acknowledgements,
# hidden nodes and the ARIB STD-T108 transmit-time limits, ~20 kbit/s (2.5 kB/s) is what a border
# router's cell delivers. Urban meshes are typically 1-8 hops, mostly 1-4. Per-hop delay ~0.15 s
# (back-off and the wait for the receiver's hopping slot). A collector serves a few hundred meters.
MESH_DEFAULT = LinkParams(
    hop_weights=(0.22, 0.25, 0.20, 0.14, 0.09, 0.05, 0.03, 0.02),  # mean ≈ 2.9 hops
    hop_loss=0.005,
    loss_spread=0.8,
    hop_latency_mean_s=0.15,
    hop_latency_shape=2.0,
    backhaul_s=0.15,  # collector on the pole → HES over a cellular or optical backhaul
    meters_per_collector=500,
    capacity_bytes_per_s=2_500.0,
    overhead_bytes=40,
    fragment_bytes=1_280,  # the IPv6 minimum MTU that 6LoWPAN fragments carry
    jitter_s=120.0,
)

# Narrowband PLC (G3-PLC-like, 10-450 kHz). Signals stop at the transformer, so a concentrator
# sits at each pole transformer or in a building's electrical room; repeaters give 1-3 hops.
# Appliance and inverter noise make loss higher than radio; ~8 kbit/s effective.
PLC_DEFAULT = LinkParams(
    hop_weights=(0.70, 0.22, 0.08),
    hop_loss=0.008,
    loss_spread=1.0,
    hop_latency_mean_s=0.35,
    hop_latency_shape=2.0,
    backhaul_s=0.15,
    meters_per_collector=200,
    capacity_bytes_per_s=1_000.0,
    overhead_bytes=30,
    fragment_bytes=400,  # a robust-mode PLC MAC frame
    jitter_s=120.0,
)

# Mostly mesh, as Japanese utilities deploy it; 1:N cellular where meters are too sparse for a
# mesh (and for HV, which is wired or cellular); PLC where radio cannot get out: high-rise flats.
DEFAULT_SHARES: dict[Method, float] = {Method.MESH: 0.84, Method.CELLULAR: 0.12, Method.PLC: 0.04}


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """The method mix (shares of LV meters, normalized) and each method's parameters.

    ``hv_method`` puts every HV/EHV meter on one method (Ethernet to a router on a cellular or
    wired WAN behaves like 1:N); ``None`` mixes them in with the LV meters.
    """

    shares: Mapping[Method, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))
    cellular: LinkParams = CELLULAR_DEFAULT
    mesh: LinkParams = MESH_DEFAULT
    plc: LinkParams = PLC_DEFAULT
    hv_method: Method | None = Method.CELLULAR
    # share of the hop-count rank that meters on one pole transformer have in common
    locality_correlation: float = 0.6

    def __post_init__(self) -> None:
        if any(not isinstance(m, Method) for m in self.shares):
            raise InvalidSetting("shares are keyed by Method")
        if any(v < 0 for v in self.shares.values()) or sum(self.shares.values()) <= 0:
            raise InvalidSetting("method shares must be non-negative and not all zero")
        if not 0.0 <= self.locality_correlation <= 1.0:
            raise InvalidSetting("locality correlation must be within 0..1")
        if self.hv_method is not None and not isinstance(self.hv_method, Method):
            raise InvalidSetting(f"hv_method must be a Method or None, got {self.hv_method!r}")

    def share(self, method: Method) -> float:
        return self.shares.get(method, 0.0) / sum(self.shares.values())

    def params(self, method: Method) -> LinkParams:
        return {Method.CELLULAR: self.cellular, Method.MESH: self.mesh, Method.PLC: self.plc}[
            method
        ]

    @property
    def label(self) -> str:
        used = sorted((m for m in Method if self.share(m) > 0), key=lambda m: -self.share(m))
        return " · ".join(f"{m.label} {self.share(m):.0%}" for m in used)

    @classmethod
    def from_mix(cls, mix: Mapping[Method | str, float] | str, **overrides: Any) -> NetworkConfig:
        """From ``{"mesh": 0.8, "cellular": 0.2}`` or ``"mesh=0.8,cellular=0.2"``."""
        shares = parse_mix(mix) if isinstance(mix, str) else _mix_shares(mix)
        return cls(shares=shares, **overrides)

    def with_params(self, method: Method, **changes: Any) -> NetworkConfig:
        """A copy with some of one method's parameters changed."""
        changed = replace(self.params(method), **changes)
        if method is Method.CELLULAR:
            return replace(self, cellular=changed)
        return replace(self, mesh=changed) if method is Method.MESH else replace(self, plc=changed)


def _mix_shares(mix: Mapping[Method | str, float]) -> dict[Method, float]:
    return {Method.parse(k) if isinstance(k, str) else k: float(v) for k, v in mix.items()}


def parse_mix(text: str) -> dict[Method, float]:
    """``"mesh=0.8,cellular=0.15,plc=0.05"`` → shares. Shares are normalized when used."""
    shares: dict[Method, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            share = float(value) if sep else 1.0
        except ValueError:
            raise InvalidSetting(f"bad share in {part!r}: expected method=number") from None
        shares[Method.parse(name)] = share
    if not shares:
        raise InvalidSetting(f"empty method mix {text!r}")
    return shares


class _TopologyLike(Protocol):
    @property
    def substation(self) -> npt.NDArray[Any]: ...
    @property
    def feeder(self) -> npt.NDArray[Any]: ...
    @property
    def transformer(self) -> npt.NDArray[Any]: ...


class PopulationLike(Protocol):
    """What the network needs of :class:`kenshin.fleet.population.Population`."""

    @property
    def topology(self) -> _TopologyLike: ...
    @property
    def is_low_voltage(self) -> npt.NDArray[np.bool_]: ...
    @property
    def customer_type(self) -> npt.NDArray[Any]: ...


@dataclass(frozen=True, slots=True)
class Placement:
    """Where each meter is, as far as communication cares (arrays of length n_meters)."""

    transformer: Int64Array  # pole transformer, -1 for HV/EHV
    feeder: Int64Array
    substation: Int64Array
    high_voltage: BoolArray
    multi_dwelling: BoolArray  # flats: radio struggles out of concrete buildings, PLC goes first

    def __post_init__(self) -> None:
        n = len(self.transformer)
        if any(len(a) != n for a in (self.feeder, self.substation, self.high_voltage)):
            raise InvalidSetting("placement arrays must have one entry per meter")
        if len(self.multi_dwelling) != n:
            raise InvalidSetting("placement arrays must have one entry per meter")

    @classmethod
    def of(cls, population: PopulationLike) -> Placement:
        topo = population.topology
        return cls(
            transformer=np.asarray(topo.transformer, dtype=np.int64),
            feeder=np.asarray(topo.feeder, dtype=np.int64),
            substation=np.asarray(topo.substation, dtype=np.int64),
            high_voltage=~np.asarray(population.is_low_voltage, dtype=bool),
            multi_dwelling=np.asarray(population.customer_type) == CustomerType.HOUSEHOLD_APARTMENT,
        )

    def __len__(self) -> int:
        return len(self.transformer)

    def locality(self) -> Int64Array:
        """Pole transformer, or a locality of its own for each meter without one (HV)."""
        own = int(self.transformer.max(initial=-1)) + 1 + np.arange(len(self), dtype=np.int64)
        return np.where(self.transformer >= 0, self.transformer, own)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The fate of each frame of one send call, in the caller's order."""

    meter_key: Int64Array
    collector: IntArray
    sent_us: Int64Array
    delivered: BoolArray
    arrival_us: Int64Array  # epoch µs at the far end; NOT_DELIVERED where lost
    airtime_bytes: Int64Array  # bytes the frame put on its collector's channel (all hops)

    def __len__(self) -> int:
        return len(self.meter_key)

    @property
    def delay_us(self) -> Int64Array:
        """Arrival − sent of the delivered frames only."""
        d = self.delivered
        return self.arrival_us[d] - self.sent_us[d]


@dataclass(frozen=True, slots=True)
class Bundles:
    """Delivered frames grouped per collector and arrival window: one envelope each."""

    index: Int64Array  # positions into the Delivery's arrays, bundle after bundle
    offsets: Int64Array  # bundle b is index[offsets[b]:offsets[b + 1]]
    collector: IntArray  # per bundle
    at_us: Int64Array  # per bundle: arrival of its last frame, when the envelope is complete

    def __len__(self) -> int:
        return len(self.collector)

    def __iter__(self) -> Iterator[tuple[int, int, Int64Array]]:
        """(collector, at_us, frame positions) per bundle, in collector then time order."""
        for b in range(len(self)):
            frames = self.index[self.offsets[b] : self.offsets[b + 1]]
            yield int(self.collector[b]), int(self.at_us[b]), frames


def bundle_by_collector(delivery: Delivery, window_us: int = _US) -> Bundles:
    """Group the delivered frames by collector and by ``window_us``-long arrival window."""
    if window_us <= 0:
        raise InvalidSetting("the bundling window must be positive")
    idx = np.flatnonzero(delivery.delivered).astype(np.int64)
    col = delivery.collector[idx]
    arrival = delivery.arrival_us[idx]
    order = _group_time_order(col, arrival) if len(idx) else np.empty(0, np.int64)
    idx, col, window = idx[order], col[order], arrival[order] // window_us
    breaks = np.flatnonzero((np.diff(col) != 0) | (np.diff(window) != 0)) + 1
    starts = np.concatenate([[0], breaks]).astype(np.int64) if len(idx) else np.empty(0, np.int64)
    at = (
        np.maximum.reduceat(delivery.arrival_us[idx], starts) if len(idx) else np.empty(0, np.int64)
    )
    return Bundles(
        index=idx,
        offsets=np.append(starts, len(idx)).astype(np.int64),
        collector=col[starts].astype(np.int32),
        at_us=at.astype(np.int64),
    )


class Network:
    """Each meter's method, collector and hops, and the collectors' channel queues.

    ``Network(population_or_placement, config, seed)``. Collector ``i`` is named
    ``collector_names[i]`` (``c00012``), a valid MQTT topic segment; ``collector_of[k]`` is meter
    ``k``'s collector, ``method[k]`` its :class:`Method` and ``hops[k]`` its hop count.
    """

    def __init__(
        self,
        where: Placement | PopulationLike,
        config: NetworkConfig | None = None,
        seed: int = 0,
    ) -> None:
        placement = where if isinstance(where, Placement) else Placement.of(where)
        self.config = config or NetworkConfig()
        rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_BUILD]))
        self.method = assign_methods(placement, self.config, rng)
        self.collector_of, self.collector_method = assign_collectors(
            placement, self.method, self.config
        )
        self.hops = draw_hops(placement, self.method, self.config, rng)
        self._table = _MethodTable(self.config)
        spread = self._table.loss_spread[self.method]
        multiplier = rng.lognormal(-0.5 * spread**2, spread)
        self.hop_loss = np.minimum(self._table.hop_loss[self.method] * multiplier, 0.95)
        self.collector_names = [f"c{i:05d}" for i in range(len(self.collector_method))]
        self.collector_capacity = self._table.capacity[self.collector_method]  # [bytes/s]
        self.busy_until_us = np.full(len(self.collector_method), np.iinfo(np.int64).min)
        # scheduled pushes draw from a stream of their own, downlink frames and the answers to
        # them from another: which pushes arrive, and when, does not depend on when (or whether)
        # the head-end asks for anything, so two runs of one seed push the same values
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_SEND]))
        self._rng_requested = np.random.default_rng(np.random.SeedSequence([seed, _TAG_REQUESTED]))

    @property
    def n_meters(self) -> int:
        return len(self.method)

    @property
    def n_collectors(self) -> int:
        return len(self.collector_method)

    def reset_queues(self) -> None:
        """Forget every collector's backlog (channels idle)."""
        self.busy_until_us[:] = np.iinfo(np.int64).min

    def fragments(self, meter_keys: npt.ArrayLike, sizes_bytes: npt.ArrayLike) -> Int64Array:
        """Link frames each message needs (``ceil(size / fragment_bytes)``)."""
        return self._frames(meter_keys, sizes_bytes).fragments

    def frame_loss(self, meter_keys: npt.ArrayLike, sizes_bytes: npt.ArrayLike) -> FloatArray:
        """Probability that one attempt of each frame is lost: ``1 − (1 − p)^(fragments·hops)``."""
        return self._frames(meter_keys, sizes_bytes).loss

    def airtime_bytes(self, meter_keys: npt.ArrayLike, sizes_bytes: npt.ArrayLike) -> Int64Array:
        """Bytes each frame puts on its collector's channel: (size + overhead) on every hop."""
        return self._frames(meter_keys, sizes_bytes).airtime

    def send_up(
        self,
        meter_keys: npt.ArrayLike,
        sizes_bytes: npt.ArrayLike,
        sent_us: npt.ArrayLike,
        *,
        jitter: bool | npt.ArrayLike = True,
    ) -> Delivery:
        """Meters → HES. ``sent_us`` is when each meter is due to send (scalar or per frame).
        Pushes add the method's random jitter; answers to a request or frames sent at a time of
        their own (``jitter=False``, or a per-frame mask) do not."""
        f = self._frames(meter_keys, sizes_bytes)
        sent = np.broadcast_to(np.asarray(sent_us, dtype=np.int64), f.keys.shape).copy()
        on = np.broadcast_to(np.asarray(jitter, dtype=bool), f.keys.shape)
        rng = self._rng if on.any() else self._rng_requested  # no jitter at all: answers
        spread = self._table.jitter_us[f.method] * on
        start = sent + (rng.random(len(f.keys)) * spread).astype(np.int64)
        leave = self._through_channel(f, start)
        arrival = leave + self._path_latency_us(f, rng) + self._table.backhaul_us[f.method]
        return self._delivery(f, sent, arrival, rng)

    def send_down(
        self, meter_keys: npt.ArrayLike, sizes_bytes: npt.ArrayLike, sent_us: npt.ArrayLike
    ) -> Delivery:
        """HES → meters (commands, re-read requests): backhaul, then the collector's channel."""
        f = self._frames(meter_keys, sizes_bytes)
        sent = np.broadcast_to(np.asarray(sent_us, dtype=np.int64), f.keys.shape).copy()
        leave = self._through_channel(f, sent + self._table.backhaul_us[f.method])
        arrival = leave + self._path_latency_us(f, self._rng_requested)
        return self._delivery(f, sent, arrival, self._rng_requested)

    def _frames(self, meter_keys: npt.ArrayLike, sizes_bytes: npt.ArrayLike) -> _Frames:
        keys = np.asarray(meter_keys, dtype=np.int64).ravel()
        sizes = np.broadcast_to(np.asarray(sizes_bytes, dtype=np.int64), keys.shape)
        if len(sizes) and sizes.min() < 1:
            raise InvalidSetting("frame sizes must be at least one byte")
        method = self.method[keys]
        hops = self.hops[keys].astype(np.int64)
        fragments = np.maximum(-(-sizes // self._table.fragment[method]), 1)
        airtime = (sizes + self._table.overhead[method] * fragments) * hops
        loss = -np.expm1(fragments * hops * np.log1p(-self.hop_loss[keys]))
        return _Frames(keys, method, hops, self.collector_of[keys], fragments, airtime, loss)

    def _through_channel(self, f: _Frames, start: Int64Array) -> Int64Array:
        service = np.ceil(f.airtime * (_US / self.collector_capacity[f.collector]))
        return fifo_queue(f.collector, start, service.astype(np.int64), self.busy_until_us)

    def _path_latency_us(self, f: _Frames, rng: np.random.Generator) -> Int64Array:
        shape = self._table.latency_shape[f.method]
        scale = self._table.latency_mean_s[f.method] / shape
        return (rng.gamma(shape * f.hops, scale) * _US).astype(np.int64)

    def _delivery(
        self, f: _Frames, sent: Int64Array, arrival: Int64Array, rng: np.random.Generator
    ) -> Delivery:
        delivered = rng.random(len(f.keys)) >= f.loss
        return Delivery(
            meter_key=f.keys,
            collector=f.collector,
            sent_us=sent,
            delivered=delivered,
            arrival_us=np.where(delivered, arrival, NOT_DELIVERED),
            airtime_bytes=f.airtime,
        )


@dataclass(frozen=True, slots=True)
class _Frames:
    """Per-frame lookups of one call, computed once."""

    keys: Int64Array
    method: npt.NDArray[np.uint8]
    hops: Int64Array
    collector: IntArray
    fragments: Int64Array
    airtime: Int64Array  # [bytes]
    loss: FloatArray  # probability one attempt is lost


class _MethodTable:
    """Per-method parameters as arrays indexed by the method's value, for vectorized lookup."""

    def __init__(self, config: NetworkConfig) -> None:
        params = [config.params(Method(max(i, 1))) for i in range(len(Method) + 1)]

        def column(get: Any, dtype: Any = np.float64) -> npt.NDArray[Any]:
            return np.array([get(p) for p in params], dtype=dtype)

        self.hop_loss: FloatArray = column(lambda p: p.hop_loss)
        self.loss_spread: FloatArray = column(lambda p: p.loss_spread)
        self.latency_mean_s: FloatArray = column(lambda p: p.hop_latency_mean_s)
        self.latency_shape: FloatArray = column(lambda p: p.hop_latency_shape)
        self.backhaul_us: Int64Array = column(lambda p: round(p.backhaul_s * _US), np.int64)
        self.capacity: FloatArray = column(lambda p: p.capacity_bytes_per_s)
        self.overhead: Int64Array = column(lambda p: p.overhead_bytes, np.int64)
        self.fragment: Int64Array = column(lambda p: p.fragment_bytes, np.int64)
        self.jitter_us: FloatArray = column(lambda p: p.jitter_s * _US)


def fifo_queue(
    group: IntArray, start_us: Int64Array, service_us: Int64Array, busy_until_us: Int64Array
) -> Int64Array:
    """When each job leaves its group's first-come-first-served server; updates ``busy_until_us``.

    The Lindley recursion ``d_i = max(t_i, d_{i−1}) + s_i`` in closed form,
    ``d_i = W_i + max_{j ≤ i}(t_j − W_{j−1})`` with ``W`` the running service sum, and the
    running maximum done as one cumulative maximum over all groups (each lifted above the last).
    """
    n = len(group)
    out = np.empty(n, dtype=np.int64)
    if not n:
        return out
    order = _group_time_order(group, start_us)
    g, t, s = group[order], start_us[order], service_us[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = g[1:] != g[:-1]
    starts = np.flatnonzero(new)
    gidx = np.cumsum(new) - 1
    total = np.cumsum(s)
    within = total - (total - s)[starts][gidx]  # W_i, inclusive, per group
    v = t - (within - s)
    v[starts] = np.maximum(v[starts], busy_until_us[g[starts]])
    done = within + _segmented_cummax(v, gidx, starts)
    ends = np.append(starts[1:] - 1, n - 1)
    busy_until_us[g[ends]] = done[ends]
    out[order] = done
    return out


def _group_time_order(group: IntArray, start_us: Int64Array) -> Int64Array:
    """Indices sorted by group, then time: one argsort of a combined key when it fits in 63 bits."""
    low = int(start_us.min())
    span = int(start_us.max()) - low + 1
    if (int(group.max()) + 1) * span < 2**62:
        key = group.astype(np.int64) * np.int64(span) + (start_us - low)
        return np.asarray(np.argsort(key, kind="stable"), dtype=np.int64)  # ties: call order
    return np.asarray(np.lexsort((start_us, group)), dtype=np.int64)


def _segmented_cummax(v: Int64Array, gidx: Int64Array, starts: Int64Array) -> Int64Array:
    low = int(v.min())
    span = int(v.max()) - low + 1
    if len(starts) * span < 2**62:
        lift = gidx * np.int64(span)
        return np.asarray(np.maximum.accumulate(v - low + lift) - lift + low, dtype=np.int64)
    bounds = np.append(starts, len(v))  # spans too wide to lift: one group at a time
    parts = [np.maximum.accumulate(v[a:b]) for a, b in itertools.pairwise(bounds)]
    return np.concatenate(parts)


def assign_methods(
    placement: Placement, config: NetworkConfig, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    """Each meter's method, whole pole transformers at a time (neighbours share a method).

    PLC goes first to the localities with the most flats, cellular to the smallest (sparse)
    localities, mesh anywhere; the method with the largest share takes what is left. HV/EHV meters
    take ``config.hv_method``.
    """
    method = np.zeros(len(placement), dtype=np.uint8)
    pool = np.ones(len(placement), dtype=bool)
    if config.hv_method is not None:
        method[placement.high_voltage] = config.hv_method
        pool = ~placement.high_voltage
    _, inverse = np.unique(placement.locality()[pool], return_inverse=True)
    size = np.bincount(inverse).astype(np.float64)
    flats = np.bincount(inverse, weights=placement.multi_dwelling[pool], minlength=len(size))
    tiebreak = rng.random(len(size))
    scores = {
        Method.PLC: -flats / np.maximum(size, 1),
        Method.CELLULAR: size,
        Method.MESH: tiebreak,
    }
    rest = max(Method, key=lambda m: (config.share(m), m == Method.MESH, m == Method.CELLULAR))
    chosen = np.full(len(size), int(rest), dtype=np.uint8)
    free = np.ones(len(size), dtype=bool)
    for m in (Method.PLC, Method.CELLULAR, Method.MESH):
        target = config.share(m) * size.sum()
        if m == rest or target <= 0:
            continue
        cand = np.flatnonzero(free)
        cand = cand[np.lexsort((tiebreak[cand], scores[m][cand]))]
        filled = np.concatenate([[0.0], np.cumsum(size[cand])])
        take = cand[: int(np.argmin(np.abs(filled - target)))]
        chosen[take] = m
        free[take] = False
    method[pool] = chosen[inverse]
    return method


def assign_collectors(
    placement: Placement, method: npt.NDArray[np.uint8], config: NetworkConfig
) -> tuple[IntArray, npt.NDArray[np.uint8]]:
    """(collector per meter, method per collector), numbered mesh, then PLC, then cellular.

    Mesh collectors take consecutive pole transformers of one feeder, PLC concentrators one pole
    transformer (PLC does not cross it), cellular gateways one substation; each is split evenly
    so none serves more than its ``meters_per_collector``.
    """
    collector = np.empty(len(placement), dtype=np.int32)
    owner: list[npt.NDArray[np.uint8]] = []
    locality = placement.locality()
    group_of = {
        Method.MESH: placement.feeder,
        Method.PLC: locality,
        Method.CELLULAR: placement.substation,
    }
    next_id = 0
    for m in (Method.MESH, Method.PLC, Method.CELLULAR):
        members = np.flatnonzero(method == m)
        if not len(members):
            continue
        group = group_of[m][members]
        members = members[np.lexsort((members, locality[members], group))]
        local, count = _chunk(group_of[m][members], config.params(m).meters_per_collector)
        collector[members] = next_id + local
        owner.append(np.full(count, int(m), dtype=np.uint8))
        next_id += count
    collector_method = np.concatenate(owner) if owner else np.empty(0, dtype=np.uint8)
    return collector, collector_method


def _chunk(sorted_group: Int64Array, cap: int) -> tuple[IntArray, int]:
    """Split each run of equal group ids into the fewest even chunks of at most ``cap``."""
    _, first, counts = np.unique(sorted_group, return_index=True, return_counts=True)
    k = -(-counts // cap)
    offset = np.concatenate([[0], np.cumsum(k)[:-1]])
    gi = np.repeat(np.arange(len(counts)), counts)
    rank = np.arange(len(sorted_group)) - first[gi]
    local = offset[gi] + rank * k[gi] // counts[gi]
    return local.astype(np.int32), int(k.sum())


def draw_hops(
    placement: Placement,
    method: npt.NDArray[np.uint8],
    config: NetworkConfig,
    rng: np.random.Generator,
) -> npt.NDArray[np.uint8]:
    """Hop counts from each method's distribution; meters on one pole transformer are alike
    (a Gaussian copula on a shared locality term, ranked back to exact uniform marginals)."""
    n = len(placement)
    c = config.locality_correlation
    _, inverse = np.unique(placement.locality(), return_inverse=True)
    shared = rng.standard_normal(int(inverse.max(initial=-1)) + 1)[inverse]
    z = np.sqrt(c) * shared + np.sqrt(1.0 - c) * rng.standard_normal(n)
    hops = np.ones(n, dtype=np.uint8)
    for m in Method:
        members = np.flatnonzero(method == m)
        if not len(members):
            continue
        u = np.empty(len(members))
        u[np.argsort(z[members])] = (np.arange(len(members)) + 0.5) / len(members)
        w = np.asarray(config.params(m).hop_weights)
        cdf = np.cumsum(w) / w.sum()
        hops[members] = np.minimum(np.searchsorted(cdf, u, side="right"), len(w) - 1) + 1
    return hops
