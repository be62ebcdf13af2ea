"""Response bodies of the HTTP API, as pydantic models so ``/docs`` shows them.

Units are in the field names where they are ambiguous (``contract_kw``, ``resolution_min``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `unknown_meter`.")
    message: str = Field(description="What is wrong, as a sentence for people.")


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorDetail


class Health(BaseModel):
    # the live system adds its own keys (simulated time, readings stored...)
    model_config = ConfigDict(extra="allow")

    status: str = Field(examples=["ok"])
    version: str
    meters: int = Field(description="Meters in the roster.")


class Meter(BaseModel):
    supply_point_id: str = Field(description="供給地点特定番号, 22 digits.")
    customer_type: str = Field(examples=["household_detached"])
    meter_generation: int = Field(description="1 (first generation) or 2 (next generation).")
    meter_class: str = Field(examples=["lv_1p3w"])
    area: str = Field(description="Utility area code, 01 Hokkaido … 10 Okinawa.", examples=["03"])
    substation: int
    feeder: int
    transformer: int | None = Field(description="Pole transformer; null for HV/EHV customers.")
    contract_a: int | None = Field(description="Ampere contract [A]; null when none.")
    contract_kw: float | None = Field(description="Contracted demand [kW]; null when none.")
    pv_kw: float = Field(description="Rooftop PV capacity [kW]; 0 without PV.")
    sampled_5min: bool = Field(description="5-min values are collected from this meter (A2/A3).")


class MeterPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[Meter]


class Register(BaseModel):
    unit_exponent: int = Field(description="One count is 10**unit_exponent kWh × coefficient.")
    coefficient: int
    digits: int = Field(description="Register digits; it rolls over after 10**digits - 1.")
    kwh_per_count: float


class Capabilities(BaseModel):
    resolutions_min: list[int] = Field(description="Resolutions the meter records [min].")
    channels: dict[str, list[str]] = Field(
        description="Channels recorded, keyed by resolution [min].",
        examples=[{"30": ["active_forward", "active_reverse"]}],
    )
    retention_min: dict[str, int] = Field(
        description="How long the meter itself keeps values, keyed by resolution [min]."
    )
    aroute_deadline_min: int = Field(description="30-min values due at the head-end within [min].")
    broute_media: list[str] = Field(description="B-route media, primary first.")
    has_switch: bool
    max_ampere_limit_a: int | None
    echonet_class: str = Field(examples=["0x0288"])
    nominal_voltage_v: int | None
    energy_register: Register


class MeterDetail(Meter):
    capabilities: Capabilities


class Reading(BaseModel):
    interval_end: str = Field(examples=["2026-04-01T00:30:00+09:00"])
    date: str = Field(description="JST day the slot belongs to.", examples=["2026-04-01"])
    slot: int = Field(description="1-based JST slot of that day (1–48 for 30-min values).")
    value: float | None = Field(description="In `unit`: kWh, kvarh or V.")
    raw: int | None = Field(description="Stored integer: register counts, or 0.1 V for voltage.")
    quality: str
    source: str
    method: str | None = Field(description="Estimation method; null unless estimated.")
    failed_rules: list[str] = Field(description="VEE rules this value failed or tripped.")
    version: int = Field(description="1 = first version of this value; higher = corrected.")
    version_time: str = Field(description="When the system learned this version (tx time).")


class Readings(BaseModel):
    supply_point_id: str
    channel: str
    resolution_min: int
    unit: str
    start: str
    end: str
    as_of: str | None
    readings: list[Reading]
