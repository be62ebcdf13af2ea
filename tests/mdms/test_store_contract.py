"""The store contract (kenshin.mdms.store) checked on every backend.

mypy checks that each backend class implements :class:`ReadingStore`; this suite checks it at run
time too (every member of every role, with the protocol's parameters), and that the behaviour
behind the roles agrees across backends. The behaviour tests live beside it and run on every
backend through the ``store``/``backend`` fixtures (``tests/mdms/conftest.py``: add a backend
there and all of them run on it): ``test_duckdb_store.py`` (reads, versions, ``as_of``, roster,
replay windows), ``test_history.py`` (``written_days``), ``test_versions.py`` (the reading rule),
and the scenario files (``tests/scenarios``, month boundaries included).
"""

from __future__ import annotations

import datetime as dt
import inspect

import numpy as np
import pyarrow as pa
import pytest

from kenshin.core.channels import Channel
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.mdms import store as contract
from kenshin.mdms import versions
from kenshin.mdms.archive import ParquetArchive
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.months import parse_month
from kenshin.mdms.postgres_store import PostgresStore
from tests.mdms.test_duckdb_store import NO_REGISTERS, rows

ROLES = [
    contract.Roster,
    contract.Meta,
    contract.ReadingWriter,
    contract.PointReader,
    contract.SweepSource,
    contract.CellReader,
    contract.GapBook,
    contract.EditLog,
    contract.EventLog,
    contract.PrincipalBook,
    contract.AuditLog,
    contract.OutageLog,
    contract.Housekeeping,
    contract.ReadingStore,
]
BACKEND_CLASSES = {"duckdb": DuckDBStore, "postgresql": PostgresStore}
US30 = Resolution.MIN30.microseconds
F, R30 = Channel.ACTIVE_FORWARD, Resolution.MIN30


def _members(role: type) -> dict[str, inspect.Signature]:
    own = {
        name: value
        for klass in role.__mro__
        if klass not in (object,) and klass.__name__ != "Protocol" and klass.__name__ != "Generic"
        for name, value in vars(klass).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }
    return {
        name: inspect.signature(value.fget if isinstance(value, property) else value)
        for name, value in own.items()
    }


@pytest.mark.parametrize("backend_name", sorted(BACKEND_CLASSES))
@pytest.mark.parametrize("role", ROLES, ids=[r.__name__ for r in ROLES])
def test_every_backend_has_every_member_of_every_role(role: type, backend_name: str) -> None:
    cls = BACKEND_CLASSES[backend_name]
    members = _members(role)
    assert members, f"{role.__name__} declares nothing"
    for name, wanted in members.items():
        got = getattr(cls, name, None)
        assert got is not None, f"{cls.__name__} lacks {role.__name__}.{name}"
        if isinstance(got, property):
            continue
        assert list(inspect.signature(got).parameters) == list(wanted.parameters), (
            f"{cls.__name__}.{name}{inspect.signature(got)} differs from the contract {wanted}"
        )


def _day(*args: int) -> int:
    return to_epoch_us(dt.datetime(*args, tzinfo=JST))


def test_housekeeping_roles_agree(store) -> None:
    """Months, export and drop by the one month convention; compaction keeps what reads see."""
    midnight = _day(2026, 4, 1)
    ends = [midnight - US30, midnight, midnight + US30]
    store.append(
        rows(1, ends, [1, 2, 3], midnight + 10 * US30), REGISTER_READS_SCHEMA.empty_table()
    )
    store.append(rows(1, ends[:1], [9], midnight + 11 * US30), REGISTER_READS_SCHEMA.empty_table())
    march, april = parse_month("2026-03"), parse_month("2026-04")
    assert store.months("readings") == [march, april]
    assert store.export_month("readings", march).num_rows == 3  # two versions + the midnight
    before = store.read_versions(_query(ends))
    if store.needs_compaction(march):
        assert store.compact(march) == 3
    assert store.read_versions(_query(ends)).equals(before)
    store.drop_month(march)
    assert store.months("readings") == [april]
    assert [r["value"] for r in store.read(_query(ends)).to_pylist()] == [3]


def test_gap_book_replaces_a_window_whole(store) -> None:
    start = _day(2026, 4, 1)

    def gaps(slots: list[int]) -> pa.Table:
        n = len(slots)
        return pa.table(
            {
                "meter_key": pa.array([1] * n, pa.int32()),
                "channel": pa.array([1] * n, pa.uint8()),
                "resolution": pa.array([30] * n, pa.uint8()),
                "interval_end": pa.array([start + s * US30 for s in slots]).cast(TIMESTAMP),
                "found_at": pa.array([start] * n).cast(TIMESTAMP),
            }
        )

    window = (Channel.ACTIVE_FORWARD, Resolution.MIN30, start, start + 48 * US30)
    store.replace_gaps(*window, versions.conform_to(gaps([3, 4]), versions.GAPS_SCHEMA))
    store.replace_gaps(*window, versions.conform_to(gaps([7]), versions.GAPS_SCHEMA))
    ends = store.read_gaps(1).column("interval_end").cast(pa.int64()).to_pylist()
    assert ends == [start + 7 * US30]


def test_sweep_source_reads_every_version_row_of_a_window(store) -> None:
    start = _day(2026, 4, 1)
    store.append(
        rows(1, [start + US30], [5], start + 2 * US30), REGISTER_READS_SCHEMA.empty_table()
    )
    store.append(
        rows(1, [start + US30], [6], start + 3 * US30), REGISTER_READS_SCHEMA.empty_table()
    )
    store.append(rows(2, [start], [7], start + 3 * US30), REGISTER_READS_SCHEMA.empty_table())
    window = store.read_window_versions(
        Channel.ACTIVE_FORWARD, Resolution.MIN30, start, start + US30
    )
    assert window.schema.names == versions.VERSION_ROWS_SCHEMA.names
    assert sorted(window.column("value").to_pylist()) == [5, 6]  # meter 2's slot is the day before
    current = versions.current_cells(window, US30)
    assert current.column("value").to_pylist() == [6]


def test_cell_reader_reads_exactly_the_named_cells(store) -> None:
    """Every version of the cells named and nothing else: not the other meters or slots
    around them, not another channel; across a JST month boundary (the slot ending at
    midnight of May 1 belongs to April) and with a cell that holds nothing."""
    april_end = _day(2026, 5, 1)  # the last 30-min slot of April ends here
    ends = [april_end - US30, april_end, april_end + US30]
    for meter in (1, 2, 3):
        store.append(rows(meter, ends, [meter * 10 + i for i in range(3)], april_end), NO_REGISTERS)
    store.append(rows(2, [april_end], [99], april_end + US30), NO_REGISTERS)  # a second version
    store.append(rows(2, [april_end], [7], april_end, channel=2), NO_REGISTERS)
    got = store.read_cell_versions(
        F,
        R30,
        np.array([2, 2, 3, 9], np.int32),
        np.array([april_end, april_end + US30, april_end - US30, april_end], np.int64),
    )
    assert got.schema.names == versions.VERSION_ROWS_SCHEMA.names
    cells = sorted(
        zip(
            got.column("meter_key").to_pylist(),
            versions._column(got, "interval_end")[0].tolist(),
            got.column("value").to_pylist(),
            strict=True,
        )
    )
    assert cells == [
        (2, april_end, 21),
        (2, april_end, 99),
        (2, april_end + US30, 22),
        (3, april_end - US30, 30),
    ]
    empty = store.read_cell_versions(F, R30, np.array([], np.int32), np.array([], np.int64))
    assert empty.num_rows == 0


def _query(ends: list[int]) -> contract.ReadingQuery:
    return contract.ReadingQuery(
        1, Channel.ACTIVE_FORWARD, Resolution.MIN30, min(ends) - 1, max(ends), None
    )


def test_sweep_source_reads_a_block_of_meters(store) -> None:
    """A sweep in blocks reads one meter range at a time (inclusive at both ends)."""
    start = _day(2026, 4, 1)
    for meter in range(1, 6):
        store.append(rows(meter, [start + US30], [meter], start + 2 * US30), NO_REGISTERS)
    reads = pa.table(
        {
            "meter_key": pa.array(range(1, 6), pa.int32()),
            "channel": pa.array([1] * 5, pa.uint8()),
            "read_at": pa.array([start] * 5).cast(TIMESTAMP),
            "register": pa.array(range(10, 15), pa.int32()),
            "source": pa.array([1] * 5, pa.uint8()),
            "tx_time": pa.array([start] * 5).cast(TIMESTAMP),
        }
    )
    store.append(READINGS_SCHEMA.empty_table(), reads)
    window = store.read_window_versions(F, R30, start, start + US30, (2, 4))
    assert sorted(window.column("meter_key").to_pylist()) == [2, 3, 4]
    registers = store.read_register_rows(F, start, start, (2, 4))
    assert sorted(registers.column("register").to_pylist()) == [11, 12, 13]
    assert store.read_register_rows(F, start, start).num_rows == 5


def test_sweep_source_reads_only_the_meter_keys_asked_for(store, tmp_path) -> None:
    """``keys`` keeps exactly those meters' rows — every version, the archived month's and the
    hot one's — as the unfiltered read filtered in numpy does; with ``meters`` both apply;
    no keys, or keys with no rows, read nothing."""
    april = _day(2026, 4, 1)  # the window spans March 31 (archived) and April 1 (hot)
    start, end = april - 48 * US30, april + 48 * US30
    meters = [*range(20), 1000, 1017, 70_000]
    for meter in meters:
        ends = [april - 3 * US30, april, april + US30 * (1 + meter % 7)]
        values = [meter, meter + 1, meter + 2]
        store.append(rows(meter, ends, values, april + 49 * US30), NO_REGISTERS)
        store.append(rows(meter, ends, values, april, channel=2), NO_REGISTERS)
    march = parse_month("2026-03")
    archive = ParquetArchive(tmp_path / "archive")
    archive.write_month(
        march, store.export_month("readings", march), store.export_month("register_reads", march)
    )
    store.drop_month(march)
    store.archive = archive
    for meter in (3, 1017):  # late versions: one of the archived month, one of the hot one
        late = rows(meter, [april - 3 * US30, april + US30], [-1, -2], april + 50 * US30)
        store.append(late, NO_REGISTERS)

    def listed(table: pa.Table, keep: np.ndarray | None = None) -> list[tuple[object, ...]]:
        chosen = table if keep is None else table.filter(pa.array(keep))
        return sorted(tuple(row.values()) for row in chosen.to_pylist())

    everything = store.read_window_versions(F, R30, start, end)
    key_column = everything.column("meter_key").to_numpy()
    ends = versions._column(everything, "interval_end")[0]
    assert (ends <= april).any() and (ends > april).any()  # both months are read
    for keys in ([3, 17, 1000, 70_000], [1017, 3, 3], [5, 999_999], [999_999]):
        asked = np.array(keys, np.int32)
        got = store.read_window_versions(F, R30, start, end, keys=asked)
        assert got.schema.names == versions.VERSION_ROWS_SCHEMA.names
        assert listed(got) == listed(everything, np.isin(key_column, asked)), keys
    both = store.read_window_versions(F, R30, start, end, (10, 2000), keys=np.array([3, 17, 1000]))
    assert listed(both) == listed(everything, np.isin(key_column, [17, 1000]))
    empty = store.read_window_versions(F, R30, start, end, keys=np.array([], np.int32))
    assert empty.num_rows == 0
    assert empty.schema.names == versions.VERSION_ROWS_SCHEMA.names
