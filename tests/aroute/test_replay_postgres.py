"""The PostgreSQL replay guard: the memory guard's window rule, shared by several workers."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from kenshin.aroute.replay import WINDOW, MemoryReplayGuard
from kenshin.aroute.replay_postgres import PostgresReplayGuard
from kenshin.errors import StoreError
from tests.conftest import require_service


@pytest.fixture
def dsn() -> str:
    host, port = require_service("postgresql")
    return f"postgresql://postgres@{host}:{port}/test"


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def guards(dsn: str, schema: str) -> Iterator[list[PostgresReplayGuard]]:
    opened = [PostgresReplayGuard(dsn, schema) for _ in range(2)]
    yield opened
    for guard in opened:
        guard.close()


def admit(guard: PostgresReplayGuard | MemoryReplayGuard, keys: list[int], counters: list[int]):
    return guard.admit(np.array(keys, dtype=np.int32), np.array(counters, dtype=np.int64)).tolist()


def test_a_replay_is_refused_by_another_guard(guards):
    first, second = guards
    assert admit(first, [1, 2, 1], [10, 0, 11]) == [True, True, True]
    assert admit(second, [1, 2, 1, 3], [10, 0, 11, 0]) == [False, False, False, True]
    assert admit(second, [1], [9]) == [True]  # late but in the window, not seen yet
    assert admit(first, [1], [9]) == [False]


def test_duplicates_in_one_batch_are_admitted_once(guards):
    assert admit(guards[0], [5, 5, 5, 6], [3, 3, 2, 3]) == [True, False, True, True]


def test_bitmap_with_the_top_bit_set_round_trips_through_bigint(guards):
    first, second = guards
    assert admit(first, [7, 7], [0, WINDOW - 1]) == [True, True]
    last, bitmap = second.state([7, 8])
    assert last.tolist() == [WINDOW - 1, -1]
    assert bitmap.dtype == np.uint64
    assert int(bitmap[0]) == 1 | 1 << 63  # a negative bigint in the table
    assert bitmap[1] == 0
    assert admit(second, [7, 7], [0, 1]) == [False, True]


def test_window_rule_matches_the_memory_guard(guards):
    """A random stream (repeats, reordering, jumps) in random batches, alternating between two
    database guards, gives the memory guard's answers frame by frame and the same final state."""
    rng = np.random.default_rng(11)
    meters = 12
    oracle = MemoryReplayGuard(meters)
    position = np.zeros(meters, dtype=np.int64)
    keys, counters = [], []
    for _ in range(3_000):
        meter = int(rng.integers(meters))
        roll = rng.random()
        if roll < 0.6:
            position[meter] += 1
            counter = position[meter]
        elif roll < 0.8:  # late or repeated, sometimes beyond the window
            counter = position[meter] - int(rng.integers(0, WINDOW + 8))
        elif roll < 0.95:
            counter = position[meter] + int(rng.integers(1, 100))  # a jump ahead, not yet sent
        else:
            position[meter] += int(rng.integers(WINDOW, 3 * WINDOW))  # a long gap
            counter = position[meter]
        keys.append(meter)
        counters.append(int(counter))
    cuts = np.sort(rng.choice(np.arange(1, len(keys)), size=120, replace=False))
    bounds = [0, *cuts.tolist(), len(keys)]
    admitted = 0
    n_late = 0
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        k = np.array(keys[lo:hi], dtype=np.int32)
        c = np.array(counters[lo:hi], dtype=np.int64)
        late, oracle_late = np.zeros(len(k), bool), np.zeros(len(k), bool)
        expected = oracle.admit(k, c, late=oracle_late).tolist()
        assert guards[i % 2].admit(k, c, late=late).tolist() == expected, f"batch {i}"
        assert late.tolist() == oracle_late.tolist(), f"batch {i}"
        admitted += sum(expected)
        n_late += int(late.sum())
    assert 0 < admitted < len(keys)
    assert n_late > 0
    last, bitmap = guards[0].state(np.arange(meters))
    oracle_last, oracle_bitmap = oracle.state()
    assert last.tolist() == oracle_last.tolist()
    assert bitmap.tolist() == oracle_bitmap.tolist()


def test_two_workers_admit_each_counter_exactly_once(dsn, schema):
    """Two guards (two connections) race through the same frames in different orders and
    batches; within the window every (meter, counter) must be admitted by exactly one."""
    meters = 150
    frames = np.array([(m, c) for m in range(meters) for c in range(WINDOW)], dtype=np.int64)
    results: list[list[tuple[int, int]]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        guard = PostgresReplayGuard(dsn, schema)
        try:
            rng = np.random.default_rng(i)
            order = frames[rng.permutation(len(frames))]
            barrier.wait()
            start = 0
            while start < len(order):
                size = int(rng.integers(50, 400))
                batch = order[start : start + size]
                ok = guard.admit(batch[:, 0].astype(np.int32), batch[:, 1])
                results[i].extend(map(tuple, batch[ok].tolist()))
                start += size
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            guard.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    both = results[0] + results[1]
    assert len(both) == len(frames)  # nothing admitted twice ...
    assert set(both) == set(map(tuple, frames.tolist()))  # ... and nothing lost
    assert results[0] and results[1]  # both really competed


def test_empty_and_malformed_batches(guards):
    assert guards[0].admit(np.zeros(0, np.int32), np.zeros(0, np.int64)).tolist() == []
    with pytest.raises(ValueError, match="counters"):
        guards[0].admit(np.zeros(2, np.int32), np.zeros(3, np.int64))


def test_rows_deleted_behind_the_guard_are_recreated(guards, dsn, schema):
    assert admit(guards[0], [1, 2], [5, 5]) == [True, True]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {schema}.frame_counters")  # a reset of the replay state
    assert admit(guards[0], [1, 2], [5, 5]) == [True, True]


def test_connection_failures_raise_store_error():
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresReplayGuard("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)
    with pytest.raises(StoreError, match="invalid PostgreSQL DSN"):
        PostgresReplayGuard("host=127.0.0.1 nonsense")
    with pytest.raises(StoreError, match="schema name"):
        PostgresReplayGuard("postgresql://postgres@127.0.0.1/test", schema="a-b")


def test_held_admissions_are_final_only_when_committed(dsn, schema) -> None:
    """A worker holds its admissions until its values are stored: rolled back (it died), the
    frames are admitted again; committed, a second worker refuses them; meanwhile it waits."""
    import threading
    import time

    a = PostgresReplayGuard(dsn, schema, hold=True)
    b = PostgresReplayGuard(dsn, schema, hold=True)
    try:
        assert admit(a, [1, 2], [5, 5]) == [True, True]
        a.rollback()  # the worker died before storing
        assert admit(a, [1, 2], [5, 5]) == [True, True]
        answer: list[list[bool]] = []
        other = threading.Thread(target=lambda: answer.append(admit(b, [1], [5])))
        other.start()
        time.sleep(0.3)
        assert not answer  # b waits on a's locked windows
        a.commit()
        other.join(timeout=10)
        b.commit()
        assert answer == [[False]]  # a replay, once a's admission is final
    finally:
        a.close()
        b.close()
