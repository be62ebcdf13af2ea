"""Network planning (SPEC A6): run a day of duty traffic through candidate method mixes.

SPEC A6: "Communication methods 1:N (cellular), multi-hop (RF mesh) and PLC, and combinations, are
to be compared and chosen per region." :func:`plan_network` builds a small synthetic area (the
topology drives collector grouping), and for each mix sends the duties of
:class:`~kenshin.hes.policy.CollectionPolicy` through :class:`~kenshin.aroute.network.Network`:

- A1: every meter every 30 min (≈ 70 bytes LV, 80 bytes HV), deadline LV 60 / HV 30 min;
- A3: ``realtime_5min_share`` of the LV meters (drawn from the LV A2 sample) every 5 min
  (≈ 60 bytes), 10 min;
- A2: ``sample_5min_share_lv`` of the LV meters and, drawn separately, ``sample_5min_share_hv``
  of the HV/EHV meters send the previous day's 5-min values (≈ 4,700 bytes LV, 3,200 HV: no
  voltage) once a day at a random time in the off-peak window, deadline ``a2_deadline`` after
  that day's end.

A value the head-end does not hold at a re-read time is re-requested: a RESEND command down, the
answer up, both through the network (A1/A3 at ``policy.a1_rereads`` / ``a3_rereads`` after the
slot end; A2 ``a2_reread_after`` after the push, then every ``late_reread_every`` until its
deadline). The report gives, per mix: on-time shares, first-attempt loss, A1 delay quantiles,
re-reads per 1,000 values and the peak offered load of one collector.
"""

from __future__ import annotations

import datetime as dt
import heapq
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kenshin.aroute.network import (
    NOT_DELIVERED,
    Delivery,
    Method,
    Network,
    NetworkConfig,
    Placement,
)
from kenshin.core.ids import Area
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.fleet.population import PopulationConfig, build_population
from kenshin.hes.policy import CollectionPolicy, Duty

Int64Array = npt.NDArray[np.int64]
MixSpec = NetworkConfig | Mapping[Method | str, float] | str

_US = 1_000_000
_MIN = 60 * _US
_TICK = 5 * _MIN  # A3 cadence; A1 every sixth tick
_DAY = 1440 * _MIN
_FIRST_DAY = dt.datetime(2026, 4, 1, tzinfo=JST)  # a plain Wednesday; the model has no calendar


@dataclass(frozen=True, slots=True)
class FrameBytes:
    """Application frame sizes [bytes] (header, payload and GCM tag), before link overhead."""

    a1_lv: int = 70  # one 30-min slot: forward and reverse registers and intervals
    a1_hv: int = 80  # plus reactive energy
    a3: int = 60  # the 5-min values just recorded
    a2_lv: int = 4_700  # a day of 5-min active, reactive and voltage values
    a2_hv: int = 3_200  # a day of 5-min active and reactive values (no voltage, SPEC A2)
    resend_request: int = 40  # the RESEND command asking for values from meter memory


def _default_comparison() -> list[MixSpec]:
    return [
        {Method.MESH: 1.0},
        {Method.CELLULAR: 1.0},
        {Method.PLC: 1.0},
        NetworkConfig(),
    ]


DEFAULT_COMPARISON: tuple[MixSpec, ...] = tuple(_default_comparison())


@dataclass(frozen=True, slots=True)
class MixResult:
    """One mix's figures over the simulated days. Shares are 0…1."""

    label: str
    config: NetworkConfig
    meters_by_method: dict[Method, int]
    collectors: int
    on_time: dict[Duty, float]  # values delivered by their deadline / values expected
    first_attempt_loss: float  # pushes lost on their first attempt / pushes
    p50_delay_s: float  # A1: slot end → first arrival at the head-end (inf if never)
    p99_delay_s: float
    rereads_per_1000: float  # RESEND commands per 1,000 expected values (all duties)
    peak_collector_bytes: int  # most bytes offered to one collector's channel in 5 minutes
    peak_collector_load: float  # the highest 5-min offered load of a collector / its capacity

    @property
    def a1_on_time(self) -> float:
        return self.on_time[Duty.A1]

    @property
    def a2_on_time(self) -> float:
        return self.on_time[Duty.A2]

    @property
    def a3_on_time(self) -> float:
        return self.on_time[Duty.A3]


def to_config(mix: MixSpec) -> NetworkConfig:
    if isinstance(mix, NetworkConfig):
        return mix
    return NetworkConfig.from_mix(mix)


def plan_network(
    n_meters: int,
    mixes: Sequence[MixSpec] | None = None,
    policy: CollectionPolicy | None = None,
    days: int = 1,
    seed: int = 1,
    *,
    area: Area = Area.TOKYO,
    sizes: FrameBytes | None = None,
    labels: Sequence[str] | None = None,
) -> list[MixResult]:
    """Simulate ``days`` days of duty traffic of an ``n_meters`` area through each mix.

    Every mix sees the same area, samples and push times (common random numbers), so differences
    between mixes come from the networks. ``labels`` name the mixes (default: their shares).
    """
    if days < 1:
        raise InvalidSetting(f"plan at least one day, got {days}")
    configs = [to_config(m) for m in (mixes if mixes is not None else DEFAULT_COMPARISON)]
    policy = policy or CollectionPolicy()
    population = build_population(
        PopulationConfig(n_meters=n_meters, area=area), np.random.default_rng(seed)
    )
    placement = Placement.of(population)
    samples = _Samples.draw(placement.high_voltage, policy, seed)
    if labels is not None and len(labels) != len(configs):
        raise InvalidSetting("give one label per mix")
    results = []
    for i, config in enumerate(configs):
        network = Network(placement, config, seed=seed)
        run = _Run(network, samples, policy, sizes or FrameBytes(), days, seed)
        result = run.simulate()
        results.append(replace(result, label=labels[i]) if labels is not None else result)
    return results


@dataclass(frozen=True, slots=True)
class _Samples:
    high_voltage: npt.NDArray[np.bool_]
    a2: Int64Array  # meters sending A2 batches
    a3: Int64Array  # meters sending A3 values (LV, inside the A2 sample)

    @classmethod
    def draw(
        cls, high_voltage: npt.NDArray[np.bool_], policy: CollectionPolicy, seed: int
    ) -> _Samples:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA2]))
        lv = np.flatnonzero(~high_voltage)
        hv = np.flatnonzero(high_voltage)
        # SPEC A2: the LV and the HV/EHV samples are drawn separately, each its own share
        lv_a2 = rng.permutation(lv)[: round(policy.sample_5min_share_lv * len(lv))]
        hv_a2 = rng.permutation(hv)[: round(policy.sample_5min_share_hv * len(hv))]
        a2 = np.sort(np.concatenate([lv_a2, hv_a2]))
        a3 = np.sort(rng.permutation(lv_a2)[: round(policy.realtime_5min_share * len(lv))])
        return cls(high_voltage, a2.astype(np.int64), a3.astype(np.int64))


@dataclass(slots=True)
class _Batch:
    """Values the head-end expects together: one slot of a duty (or one A2 push bucket)."""

    duty: Duty
    ref_us: int  # slot end; for A2 the end of the day the batch covers
    keys: Int64Array
    sizes: Int64Array
    deadline_us: Int64Array  # absolute, per meter
    sent_us: Int64Array | int  # when the push is due
    jitter: bool  # A1/A3 pushes wait a random jitter; A2 pushes go at their drawn time
    best_us: Int64Array = field(init=False)  # earliest arrival so far, NOT_DELIVERED if none

    def __post_init__(self) -> None:
        self.best_us = np.full(len(self.keys), NOT_DELIVERED, dtype=np.int64)

    def on_time(self) -> int:
        return int((self.best_us <= self.deadline_us).sum())


class _LoadMeter:
    """Bytes offered to each collector per 5-min window; keeps the peak of closed windows."""

    def __init__(self, network: Network) -> None:
        self.capacity_5min = network.collector_capacity * (_TICK / _US)
        self.open: dict[int, npt.NDArray[np.float64]] = {}
        self.peak_bytes = 0.0
        self.peak_load = 0.0

    def add(self, delivery: Delivery) -> None:
        window = delivery.sent_us // _TICK
        for w in np.unique(window).tolist():
            sel = window == w
            counts = np.bincount(
                delivery.collector[sel],
                weights=delivery.airtime_bytes[sel],
                minlength=len(self.capacity_5min),
            ).astype(np.float64)
            self.open[w] = self.open[w] + counts if w in self.open else counts

    def close_before(self, now_us: int) -> None:
        """Windows before ``now_us`` are complete: later sends are all at ``now_us`` or after."""
        for w in [w for w in self.open if w < now_us // _TICK]:
            counts = self.open.pop(w)
            self.peak_bytes = max(self.peak_bytes, float(counts.max(initial=0.0)))
            self.peak_load = max(self.peak_load, float((counts / self.capacity_5min).max()))


class _Run:
    """One mix: an event loop over push ticks and re-read rounds, in time order."""

    def __init__(
        self,
        network: Network,
        samples: _Samples,
        policy: CollectionPolicy,
        sizes: FrameBytes,
        days: int,
        seed: int,
    ) -> None:
        self.net = network
        self.samples = samples
        self.policy = policy
        self.sizes = sizes
        self.start_us = to_epoch_us(_FIRST_DAY)
        self.end_us = self.start_us + days * _DAY
        self._draw_a2_pushes(days, seed)
        self.batches: list[_Batch] = []
        self.events: list[tuple[int, int]] = []  # (time, batch index to re-read or -1 = push tick)
        self.load = _LoadMeter(network)
        self.first_sent = 0
        self.first_lost = 0
        self.rereads = 0

    def _draw_a2_pushes(self, days: int, seed: int) -> None:
        """Each A2 meter's push time per day, uniform in the off-peak window, sorted by time."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA2, 1]))
        p = self.policy
        begin = (p.offpeak_start.hour * 60 + p.offpeak_start.minute) * _MIN
        end = (p.offpeak_end.hour * 60 + p.offpeak_end.minute) * _MIN
        length = (end - begin) % _DAY
        n_a2 = len(self.samples.a2)
        day = np.repeat(np.arange(days, dtype=np.int64), n_a2)
        at = (
            self.start_us + day * _DAY + begin + (rng.random(days * n_a2) * length).astype(np.int64)
        )
        order = np.argsort(at, kind="stable")
        self.a2_at = at[order]
        self.a2_day = day[order]
        self.a2_meter = np.tile(self.samples.a2, days)[order]

    def simulate(self) -> MixResult:
        for tick in range(self.start_us, self.end_us + 1, _TICK):
            heapq.heappush(self.events, (tick, -1))
        while self.events:
            now = self.events[0][0]
            due: list[int] = []
            while self.events and self.events[0][0] == now:
                due.append(heapq.heappop(self.events)[1])
            if -1 in due:
                self._push(now)
            self._reread(now, [i for i in due if i >= 0])
            self.load.close_before(now)
        self.load.close_before(np.iinfo(np.int64).max)
        return self._result()

    # ---- pushes -------------------------------------------------------------------------------

    def _push(self, now: int) -> None:
        new = self._slot_batches(now) + self._a2_batches(now)
        if not new:
            return
        sent = [np.broadcast_to(np.asarray(b.sent_us, dtype=np.int64), b.keys.shape) for b in new]
        push = self.net.send_up(
            np.concatenate([b.keys for b in new]),
            np.concatenate([b.sizes for b in new]),
            np.concatenate(sent),
            jitter=np.concatenate([np.full(len(b.keys), b.jitter) for b in new]),
        )
        self.load.add(push)
        self.first_sent += len(push)
        self.first_lost += int((~push.delivered).sum())
        offset = 0
        for batch in new:
            batch.best_us = push.arrival_us[offset : offset + len(batch.keys)].copy()
            offset += len(batch.keys)
            self._schedule_rereads(batch, now)

    def _slot_batches(self, now: int) -> list[_Batch]:
        """A3 for the 5-min slot ending now and, on the half hour, A1 for the 30-min slot."""
        if not self.start_us < now <= self.end_us:
            return []
        p, s, hv = self.policy, self.sizes, self.samples.high_voltage
        a3 = self.samples.a3
        # SPEC A3: 5-min values within 10 minutes
        a3_deadline = np.full(len(a3), now + _us(p.a3_deadline), dtype=np.int64)
        out = [_Batch(Duty.A3, now, a3, np.full(len(a3), s.a3), a3_deadline, now, True)]
        if now % (30 * _MIN) == 0:
            keys = np.arange(len(hv), dtype=np.int64)
            # SPEC A1: LV 30-min values within 60 minutes, HV within 30 minutes of the slot end
            deadline = now + np.where(hv, _us(p.a1_deadline_hv), _us(p.a1_deadline_lv))
            sizes = np.where(hv, s.a1_hv, s.a1_lv)
            out.insert(0, _Batch(Duty.A1, now, keys, sizes, deadline, now, True))
        return out

    def _a2_batches(self, now: int) -> list[_Batch]:
        """A2 pushes drawn inside [now, now + 5 min): one batch per covered day."""
        lo, hi = np.searchsorted(self.a2_at, [now, now + _TICK])
        out = []
        for day in np.unique(self.a2_day[lo:hi]).tolist():
            sel = np.arange(lo, hi)[self.a2_day[lo:hi] == day]
            keys = self.a2_meter[sel]
            ref = self.start_us + day * _DAY  # the batch covers the day that ended here
            hv = self.samples.high_voltage[keys]
            sizes = np.where(hv, self.sizes.a2_hv, self.sizes.a2_lv)
            deadline = np.full(len(keys), ref + _us(self.policy.a2_deadline), dtype=np.int64)
            out.append(_Batch(Duty.A2, ref, keys, sizes, deadline, self.a2_at[sel], False))
        return out

    # ---- re-reads -----------------------------------------------------------------------------

    def _schedule_rereads(self, batch: _Batch, now: int) -> None:
        index = len(self.batches)
        self.batches.append(batch)
        for t in self._reread_times(batch, now):
            heapq.heappush(self.events, (t, index))

    def _reread_times(self, batch: _Batch, now: int) -> list[int]:
        p = self.policy
        if batch.duty is Duty.A2:
            # SPEC A2 "within a few days": ask again a2_reread_after after the push bucket, then
            # every late_reread_every until the deadline
            last = int(batch.deadline_us.max())
            return list(range(now + _TICK + _us(p.a2_reread_after), last, _us(p.late_reread_every)))
        delays = p.a1_rereads if batch.duty is Duty.A1 else p.a3_rereads
        return [batch.ref_us + _us(d) for d in delays]

    def _reread(self, now: int, due: list[int]) -> None:
        """RESEND what is still missing now: a command down, the answer up at its arrival."""
        pieces = [(b, np.flatnonzero(self.batches[b].best_us > now)) for b in due]
        pieces = [(b, pos) for b, pos in pieces if len(pos)]
        if not pieces:
            return
        keys = np.concatenate([self.batches[b].keys[pos] for b, pos in pieces])
        sizes = np.concatenate([self.batches[b].sizes[pos] for b, pos in pieces])
        self.rereads += len(keys)
        down = self.net.send_down(keys, self.sizes.resend_request, now)
        ok = down.delivered
        up = self.net.send_up(keys[ok], sizes[ok], down.arrival_us[ok], jitter=False)
        self.load.add(down)
        self.load.add(up)
        arrival = np.full(len(keys), NOT_DELIVERED, dtype=np.int64)
        arrival[ok] = up.arrival_us
        offset = 0
        for b, pos in pieces:
            batch = self.batches[b]
            batch.best_us[pos] = np.minimum(batch.best_us[pos], arrival[offset : offset + len(pos)])
            offset += len(pos)

    # ---- figures ------------------------------------------------------------------------------

    def _result(self) -> MixResult:
        on_time = {}
        for duty in Duty:
            batches = [b for b in self.batches if b.duty is duty]
            expected = sum(len(b.keys) for b in batches)
            on_time[duty] = sum(b.on_time() for b in batches) / expected if expected else math.nan
        a1 = [b for b in self.batches if b.duty is Duty.A1]
        best = np.concatenate([b.best_us for b in a1]) if a1 else np.empty(0, np.int64)
        ref = np.concatenate([np.full(len(b.keys), b.ref_us) for b in a1]) if a1 else best
        delay_s = np.where(best == NOT_DELIVERED, np.inf, (best - ref) / _US)
        p50, p99 = _quantiles(delay_s, (0.5, 0.99))
        values = sum(len(b.keys) for b in self.batches)
        methods = np.bincount(self.net.method, minlength=len(Method) + 1)
        return MixResult(
            label=self.net.config.label,
            config=self.net.config,
            meters_by_method={m: int(methods[m]) for m in Method},
            collectors=self.net.n_collectors,
            on_time=on_time,
            first_attempt_loss=self.first_lost / max(self.first_sent, 1),
            p50_delay_s=p50,
            p99_delay_s=p99,
            rereads_per_1000=1000.0 * self.rereads / max(values, 1),
            peak_collector_bytes=round(self.load.peak_bytes),
            peak_collector_load=self.load.peak_load,
        )


def _us(delta: dt.timedelta) -> int:
    return delta // dt.timedelta(microseconds=1)


def _quantiles(values: npt.NDArray[np.float64], qs: tuple[float, float]) -> tuple[float, float]:
    if not len(values):
        return math.nan, math.nan
    # no interpolation, so a quantile among never-delivered values reads as inf
    lo, hi = np.quantile(values, qs, method="inverted_cdf")
    return float(lo), float(hi)


# ---- report -------------------------------------------------------------------------------------

_DUTIES = (Duty.A1, Duty.A3, Duty.A2)
_MAX_NINES = 5.0  # 99.999 %: the top of the charts


def nines(share: float) -> float:
    """On-time share on a "nines" scale: 90 % → 1, 99 % → 2, 99.9 % → 3 … (capped at 5)."""
    if math.isnan(share):
        return 0.0
    return min(-math.log10(max(1.0 - share, 10**-_MAX_NINES)), _MAX_NINES)


def _pct(share: float) -> str:
    return "—" if math.isnan(share) else f"{100 * share:.3f} %"


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "never"
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _methods(result: MixResult) -> str:
    return " / ".join(f"{result.meters_by_method[m]:,}" for m in Method)


REPORT_TEXT_COLUMNS = 3  # the first columns of the report are text, the others figures
NINES_LEGEND = (
    "On-time share, bar length in nines (90 % = 1, 99 % = 2, 99.9 % = 3 …); "
    "targets: A1 ≥ 99.9 %, A3 ≥ 99 %"
)


def report_header() -> list[str]:
    """The columns of the report (``kenshin plan-network`` prints it as a table)."""
    return [
        "mix",
        "meters cell/mesh/plc",
        "collectors",
        *(f"{duty.label} on time" for duty in _DUTIES),
        "1st-try loss",
        "A1 delay p50 / p99",
        "re-reads /1k",
        "peak load /collector",
    ]


def report_row(r: MixResult) -> list[str]:
    """One mix's figures, as text, in the order of :func:`report_header`."""
    return [
        r.label,
        _methods(r),
        f"{r.collectors:,}",
        *(_pct(r.on_time[d]) for d in _DUTIES),
        _pct(r.first_attempt_loss),
        f"{_seconds(r.p50_delay_s)} / {_seconds(r.p99_delay_s)}",
        f"{r.rereads_per_1000:.1f}",
        f"{r.peak_collector_bytes / 1000:,.0f} kB/5 min ({r.peak_collector_load:.0%})",
    ]


def bar_lines(results: Sequence[MixResult], width: int = 40) -> list[str]:
    """The text bar chart, one line per mix and duty."""
    label_width = max((len(r.label) for r in results), default=0)
    lines = []
    for r in results:
        for i, duty in enumerate(_DUTIES):
            cells = nines(r.on_time[duty]) / _MAX_NINES * width
            bar = "█" * int(cells) + ("▌" if cells - int(cells) >= 0.5 else "")
            name = r.label if i == 0 else ""
            lines.append(
                f"{name:<{label_width}}  {duty.label} {bar:<{width + 1}} {_pct(r.on_time[duty])}"
            )
    return lines


_COLOURS = {Duty.A1: "#1f77b4", Duty.A3: "#ff7f0e", Duty.A2: "#2ca02c"}


def svg_chart(results: Sequence[MixResult]) -> str:
    """A grouped bar chart of the on-time shares on the nines scale, as an SVG document."""
    bar, gap, left, top, plot_h = 28, 36, 70, 40, 250
    group_w = bar * len(_DUTIES) + gap
    width = left + group_w * max(len(results), 1) + 20
    height = top + plot_h + 70
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="20" font-size="14">On-time share by mix (SPEC A6)</text>',
    ]
    for k in range(int(_MAX_NINES) + 1):
        y = top + plot_h - k / _MAX_NINES * plot_h
        label = "0 %" if k == 0 else f"{100 - 100 / 10**k:g} %"
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for i, r in enumerate(results):
        x0 = left + gap / 2 + i * group_w
        for j, duty in enumerate(_DUTIES):
            h = nines(r.on_time[duty]) / _MAX_NINES * plot_h
            x, y = x0 + j * bar, top + plot_h - h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 4}" height="{h:.1f}" '
                f'fill="{_COLOURS[duty]}"><title>{duty.label} {_pct(r.on_time[duty])}</title>'
                "</rect>"
            )
        out.append(
            f'<text x="{x0 + bar * len(_DUTIES) / 2:.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle">{html.escape(r.label)}</text>'
        )
    for j, duty in enumerate(_DUTIES):
        x = left + j * 70
        y = height - 20
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{_COLOURS[duty]}"/>')
        out.append(f'<text x="{x + 14}" y="{y}">{duty.label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(results: Sequence[MixResult], path: Path | str) -> None:
    Path(path).write_text(svg_chart(results), encoding="utf-8")
