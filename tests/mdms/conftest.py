"""The store fixture: every store test runs on each backend (DuckDB, PostgreSQL).

The PostgreSQL variant needs a server (``require_service``: skipped when none is reachable, unless
``KENSHIN_REQUIRE_SERVICES=1``) and works in a schema of its own, dropped after the test, so tests
never see each other's rows. ``KENSHIN_TEST_POSTGRES_DSN`` points the tests at another server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.postgres_store import PostgresStore
from kenshin.mdms.store import ReadingStore
from tests.conftest import require_service

BACKENDS = ["duckdb", "postgresql"]


def postgres_dsn() -> str:
    """DSN of the test server; skips (or fails under KENSHIN_REQUIRE_SERVICES=1) without one."""
    host, port = require_service("postgresql")
    return os.environ.get("KENSHIN_TEST_POSTGRES_DSN", f"postgresql://postgres@{host}:{port}/test")


def unique_schema() -> str:
    return f"test_{uuid.uuid4().hex[:16]}"


class Backend:
    """Opens stores of one backend on one database (file or schema), and cleans up after."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self._stores: list[ReadingStore] = []
        if name == "duckdb":
            self.path = tmp_path / "t.duckdb"
        else:
            self.dsn = postgres_dsn()
            self.schema = unique_schema()

    def open(self, *, read_only: bool = False) -> Any:
        store: ReadingStore
        if self.name == "duckdb":
            store = DuckDBStore(self.path, read_only=read_only)
        else:
            store = PostgresStore(self.dsn, schema=self.schema, read_only=read_only)
        self._stores.append(store)
        return store

    def cleanup(self) -> None:
        for store in self._stores:
            store.close()
        if self.name == "postgresql":
            janitor = PostgresStore(self.dsn, schema=self.schema)
            janitor.drop_schema()
            janitor.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = Backend(request.param, tmp_path)
    yield b
    b.cleanup()


@pytest.fixture
def store(backend: Backend) -> ReadingStore:
    return backend.open()


@pytest.fixture
def pg_store() -> Iterator[PostgresStore]:
    """A PostgreSQL store in a throwaway schema (PostgreSQL-only tests)."""
    s = PostgresStore(postgres_dsn(), schema=unique_schema())
    yield s
    s.drop_schema()
    s.close()
