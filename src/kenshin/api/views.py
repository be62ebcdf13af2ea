"""Store rows → API bodies: labels for codes, values in physical units, JST time strings.

The store speaks codes and integers (compact, and the same for every backend); callers want labels
and kWh. ``meter_key`` is internal and never leaves this module.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.api.models import Capabilities, Meter, MeterDetail, Register
from kenshin.core.channels import VOLTAGE_SCALE, Channel
from kenshin.core.customers import CustomerType
from kenshin.core.ids import Area
from kenshin.core.meterspec import Generation, MeterClass, MeterSpec, meter_spec
from kenshin.core.quality import EstimationMethod, Quality, Rule, Source
from kenshin.core.timeslots import Resolution, iso_jst, slot_numbers

_UNIX_DAY_ORDINAL = dt.date(1970, 1, 1).toordinal()
_QUALITY = {int(q): q.label for q in Quality}
_SOURCE = {int(s): s.label for s in Source}
_METHOD: dict[int, str | None] = {int(m): m.label for m in EstimationMethod}
_METHOD[int(EstimationMethod.NONE)] = None


def _kw(value: float | None) -> float | None:
    # float32 in the roster: 4.3 would print as 4.300000190734863
    return None if value is None else round(float(value), 3)


def meter_view(row: dict[str, Any]) -> Meter:
    transformer = row["transformer"]
    contract_kw = _kw(row["contract_kw"])
    return Meter(
        supply_point_id=row["supply_point_id"],
        customer_type=CustomerType(row["customer_type"]).label,
        meter_generation=int(row["generation"]),
        meter_class=MeterClass(row["meter_class"]).label,
        area=Area(row["area"]).code,
        substation=int(row["substation"]),
        feeder=int(row["feeder"]),
        # HV/EHV customers take supply above the pole transformers; stored as -1
        transformer=None if transformer is None or transformer < 0 else int(transformer),
        contract_a=int(row["contract_a"] or 0) or None,  # 0: no ampere contract
        contract_kw=contract_kw or None,
        pv_kw=_kw(row["pv_kw"]) or 0.0,
        sampled_5min=bool(row["sampled_5min"]),
    )


def spec_of(row: dict[str, Any]) -> MeterSpec:
    return meter_spec(Generation(row["generation"]), MeterClass(row["meter_class"]))


def meter_detail_view(row: dict[str, Any]) -> MeterDetail:
    spec = spec_of(row)
    # the roster's unit and coefficient are what this meter's values are converted with
    register = Register(
        unit_exponent=int(row["unit_exponent"]),
        coefficient=int(row["coefficient"]),
        digits=spec.register.digits,
        kwh_per_count=_kwh_per_count(row),
    )
    capabilities = Capabilities(
        resolutions_min=[int(r) for r in sorted(spec.resolutions, reverse=True)],
        channels={
            str(int(r)): [c.label for c in spec.channels[r]]
            for r in sorted(spec.channels, reverse=True)
        },
        retention_min={
            str(int(r)): int(spec.retention[r].total_seconds() // 60)
            for r in sorted(spec.retention, reverse=True)
        },
        aroute_deadline_min=int(spec.aroute_deadline.total_seconds() // 60),
        broute_media=[m.name.lower() for m in spec.broute_media],
        has_switch=spec.has_switch,
        max_ampere_limit_a=spec.max_ampere_limit_a,
        echonet_class=f"0x{spec.echonet_class:04X}",
        nominal_voltage_v=spec.nominal_voltage_v,
        energy_register=register,
    )
    return MeterDetail(**meter_view(row).model_dump(), capabilities=capabilities)


def recorded_summary(spec: MeterSpec) -> str:
    """'30-min: active_forward, active_reverse; 5-min: ...' for error messages."""
    return "; ".join(
        f"{int(r)}-min: {', '.join(c.label for c in spec.channels[r])}"
        for r in sorted(spec.channels, reverse=True)
    )


def _kwh_per_count(row: dict[str, Any]) -> float:
    return float(_scale(np.array([1], dtype=np.int64), Channel.ACTIVE_FORWARD, row)[0])


def _scale(raw: npt.NDArray[np.int64], channel: Channel, row: dict[str, Any]) -> npt.NDArray[Any]:
    """Stored integers → kWh, kvarh or V."""
    if channel is Channel.VOLTAGE:
        return raw / VOLTAGE_SCALE
    exponent = int(row["unit_exponent"])
    counts = raw.astype(np.float64) * int(row["coefficient"])
    # divide by an exact power of ten so 123 × 10**-2 prints as 1.23, not 1.2300000000000002
    return counts / 10.0**-exponent if exponent < 0 else counts * 10.0**exponent


def _epoch_us(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)


def _rule_lists(table: pa.Table) -> list[list[str]]:
    if "failed_rule" not in table.column_names:
        return [[] for _ in range(table.num_rows)]
    names: dict[int, list[str]] = {}
    out = []
    for flags in table.column("failed_rule").fill_null(0).to_pylist():
        if flags not in names:
            names[flags] = [r.label for r in Rule if r is not Rule.NONE and flags & r]
        out.append(names[flags])
    return out


def _versions(table: pa.Table) -> list[int]:
    if "version" not in table.column_names:
        return [1] * table.num_rows
    return [int(v) for v in table.column("version").to_pylist()]


def readings_view(
    table: pa.Table, channel: Channel, resolution: Resolution, row: dict[str, Any]
) -> list[dict[str, Any]]:
    """The store's current versions as reading objects, vectorized per column."""
    if table.num_rows == 0:
        return []
    ends_us = _epoch_us(table.column("interval_end"))
    days, slots = slot_numbers(ends_us, resolution)
    day_text = np.datetime_as_string((days - _UNIX_DAY_ORDINAL).astype("datetime64[D]")).tolist()
    value_col = table.column("value")
    present = np.asarray(value_col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    raw = np.asarray(value_col.fill_null(0).to_numpy(), dtype=np.int64)
    values = _scale(raw, channel, row)
    raw_out: list[int | None] = [
        int(r) if ok else None for r, ok in zip(raw.tolist(), present.tolist(), strict=True)
    ]
    value_out: list[float | None] = [
        float(v) if ok else None for v, ok in zip(values.tolist(), present.tolist(), strict=True)
    ]
    quality = [_QUALITY.get(q, str(q)) for q in table.column("quality").to_pylist()]
    source = [_SOURCE.get(s, str(s)) for s in table.column("source").to_pylist()]
    method = [
        None if m is None else _METHOD.get(m, str(m)) for m in table.column("method").to_pylist()
    ]
    return [
        {
            "interval_end": end,
            "date": day,
            "slot": slot,
            "value": value,
            "raw": raw_value,
            "quality": q,
            "source": s,
            "method": m,
            "failed_rules": rules,
            "version": version,
            "version_time": tx,
        }
        for end, day, slot, value, raw_value, q, s, m, rules, version, tx in zip(
            iso_jst(ends_us),
            day_text,
            slots.tolist(),
            value_out,
            raw_out,
            quality,
            source,
            method,
            _rule_lists(table),
            _versions(table),
            iso_jst(_epoch_us(table.column("tx_time"))),
            strict=True,
        )
    ]
