"""Arrow schemas of the columnar batches that move readings from the head-end to storage.

Readings are long rows (ARCHITECTURE "Storage"): one row per meter × channel × resolution ×
interval end, never updated in place. ``value`` is an integer in the meter's register unit for
energy channels and in 0.1 V for voltage. ``tx_time`` is when the system learned the value
(transaction time); the latest ``tx_time`` of a (meter, channel, resolution, interval_end) is the
current version.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="Asia/Tokyo")

READINGS_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("channel", pa.uint8()),
        ("resolution", pa.uint8()),
        ("interval_end", TIMESTAMP),
        ("value", pa.int32()),
        ("quality", pa.uint8()),
        ("source", pa.uint8()),
        ("method", pa.uint8()),
        ("failed_rule", pa.uint16()),  # kenshin.core.quality.Rule flags that VEE raised
        ("tx_time", TIMESTAMP),
    ]
)

# Register reads taken at the end of each 30-min slot: what the sum check of the MDMS needs (M5).
REGISTER_READS_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("channel", pa.uint8()),
        ("read_at", TIMESTAMP),
        ("register", pa.int32()),
        ("source", pa.uint8()),
        ("tx_time", TIMESTAMP),
    ]
)

# Meter events (power fail and restore, switch trips, tamper, clock steps: SPEC R1–R3) as the
# head-end received them. ``occurred`` is the meter's clock; ``tx_time`` when the system stored
# the event. A meter reports an event once; a copy delivered again is the same row (the key is
# meter, code and ``occurred``), so the stores keep the first and ignore repeats.
EVENTS_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("code", pa.uint8()),  # kenshin.aroute.frames.EventCode
        ("occurred", TIMESTAMP),
        ("detail", pa.int32()),
        ("tx_time", TIMESTAMP),
    ]
)

# The audit trail of the API (SPEC X3, X5, X6): one row per request or refusal, never updated.
AUDIT_SCHEMA = pa.schema(
    [
        ("logged_at", TIMESTAMP),
        ("principal", pa.string()),  # who ("-": no valid credentials)
        ("method", pa.string()),
        ("route", pa.string()),  # the route template, e.g. /api/v1/meters/{supply_point_id}
        ("path", pa.string()),  # what was asked (query strings are not kept: they may hold ids)
        ("meters", pa.string()),  # the supply point ids named, space-separated, or empty
        ("status", pa.int16()),
        ("reason", pa.string()),  # why it was refused, empty when it was served
        ("remote", pa.string()),  # the client address
    ]
)

# Every transition of every command the head-end's command book made (issue 16; SPEC X2): the
# status of a command outlives the book, which forgets finished ones after a day.
COMMAND_LOG_SCHEMA = pa.schema(
    [
        ("changed_at", TIMESTAMP),
        ("command_id", pa.int64()),
        ("meter_key", pa.int32()),
        ("kind", pa.string()),  # set_ampere_limit, switch_open, …
        ("from_state", pa.string()),  # null: the request itself
        ("to_state", pa.string()),
        ("detail", pa.string()),
        ("requested_by", pa.string()),
    ]
)

# Outage events (issue 15; SPEC R1, R2): one row per event, rewritten as it moves through its
# lifecycle. ``detail`` is JSON: the meter keys it darkens and its timeline.
OUTAGES_SCHEMA = pa.schema(
    [
        ("event_id", pa.int64()),
        ("level", pa.string()),  # substation, feeder, transformer, service_drop
        ("device", pa.int32()),
        ("state", pa.string()),  # suspected, confirmed, restoring, restored
        ("started", TIMESTAMP),  # dated back to the first evidence
        ("confirmed", TIMESTAMP),
        ("restored", TIMESTAMP),
        ("confidence", pa.float64()),
        ("customers", pa.int32()),
        ("merged_into", pa.int64()),  # the event that absorbed it; null when it stands
        ("detail", pa.string()),
    ]
)

METERS_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("supply_point_id", pa.string()),
        ("device_id", pa.int64()),  # A-route address of the meter
        ("area", pa.uint8()),
        ("customer_type", pa.uint8()),
        ("meter_class", pa.uint8()),
        ("generation", pa.uint8()),
        ("contract_a", pa.int16()),
        ("contract_kw", pa.float32()),
        ("pv_kw", pa.float32()),
        ("unit_exponent", pa.int8()),
        ("coefficient", pa.int32()),
        ("substation", pa.int32()),
        ("feeder", pa.int32()),
        ("transformer", pa.int32()),
        ("sampled_5min", pa.bool_()),  # A2: sends 5-min values
        ("realtime_5min", pa.bool_()),  # A3: sends them in real time
    ]
)
