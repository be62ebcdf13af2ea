"""Every store is opened here, from one option value.

A store is named by ``--store PATH.duckdb`` or ``--store postgresql://…`` (a DSN; ``postgres://``
too); ``--db PATH`` and ``--postgres DSN`` stay as aliases, one of them at a time. Each command
opens its store in one of three modes (:class:`StoreMode`):

- ``CREATE``: a new store. An existing DuckDB file, or a PostgreSQL schema that holds a fleet, is
  refused unless ``overwrite`` (then it is replaced: the file deleted, the schema dropped).
- ``OPEN``: an existing store, read and written. A DuckDB file that does not exist, or a
  PostgreSQL schema without the kenshin tables, is refused and nothing is created.
- ``READ_ONLY``: an existing store, only read (the API server).

Mistakes are :class:`~kenshin.errors.InvalidStore` (the command line's exit code 2); a server
that cannot be reached or a file that cannot be opened is a :class:`~kenshin.errors.StoreError`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kenshin.errors import InvalidStore, StoreError
from kenshin.secrecy import make_private_dir, redact

if TYPE_CHECKING:
    from kenshin.aroute.replay import ReplayGuard
    from kenshin.mdms.store import ReadingStore

DEFAULT_SCHEMA = "kenshin"  # the PostgreSQL schema of a store named by a DSN alone
DSN_SCHEMES = ("postgresql://", "postgres://")
DUCKDB_SUFFIX = ".duckdb"
# a store holds at least these tables (both backends create them first)
STORE_TABLES = ("meters", "readings")
FIRST_RUN = "run `kenshin simulate` or `kenshin install` first"

log = logging.getLogger("kenshin.stores")


class StoreMode(enum.Enum):
    CREATE = "create"
    OPEN = "open"
    READ_ONLY = "read-only"


# where kenshin keeps its files unless told otherwise: the default DuckDB store, the B-route
# credentials, kenshin up's store; made 0700 when kenshin creates it (X3)
DATA_DIR = Path("data")


@dataclass(frozen=True)
class StoreLocation:
    """Where a store lives: a DuckDB file or a PostgreSQL database (exactly one)."""

    path: Path | None = None
    dsn: str | None = field(default=None, repr=False)  # may hold a password (X3): describe()

    def __post_init__(self) -> None:
        if (self.path is None) == (self.dsn is None):
            raise ValueError("a store location is a DuckDB path or a PostgreSQL DSN")

    @property
    def is_postgres(self) -> bool:
        return self.dsn is not None

    @property
    def directory(self) -> Path:
        """Where files kept next to the store go: the DuckDB file's directory, or the data
        directory for PostgreSQL."""
        return DATA_DIR if self.path is None else self.path.parent

    def describe(self, schema: str = DEFAULT_SCHEMA) -> str:
        """The DuckDB path, or the DSN without its password and the ``schema``."""
        if self.path is not None:
            return str(self.path)
        from kenshin.postgres import describe_dsn

        assert self.dsn is not None
        return f"{describe_dsn(self.dsn)} (schema {schema})"


def parse_store(value: str) -> StoreLocation:
    """The location named by a ``--store`` value: ``PATH.duckdb`` or ``postgresql://…``."""
    if value.startswith(DSN_SCHEMES):
        return _postgres(value, "--store")
    if "://" in value or not value.endswith(DUCKDB_SUFFIX):
        raise InvalidStore(
            f"--store: expected PATH{DUCKDB_SUFFIX} or a postgresql:// DSN, got {value!r}"
        )
    return StoreLocation(path=Path(value))


def choose_store(
    *, store: str | None, db: Path | None, postgres: str | None, default: Path
) -> StoreLocation:
    """The store named by ``--store`` or one of its aliases ``--db`` / ``--postgres``; ``default``
    (a DuckDB path) when none is given. Two of them together are refused."""
    given = [
        name
        for name, value in (("--store", store), ("--db", db), ("--postgres", postgres))
        if value is not None
    ]
    if len(given) > 1:
        raise InvalidStore(
            f"{' and '.join(given)} both name the store; give one "
            "(--store PATH.duckdb or --store postgresql://…)"
        )
    if store is not None:
        return parse_store(store)
    if postgres is not None:
        return _postgres(postgres, "--postgres")
    return StoreLocation(path=db if db is not None else default)


def _postgres(dsn: str, option: str) -> StoreLocation:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        # libpq's message ends in a newline, and may repeat the DSN with its password (X3)
        message = redact(" ".join(str(exc).split()))
        raise InvalidStore(f"{option}: not a PostgreSQL DSN: {message}") from None
    return StoreLocation(dsn=dsn)


# the store's meta key naming the Parquet archive its old months went to (kenshin archive, the
# system's monthly housekeeping): every later opening reads those months from there
ARCHIVE_META = "archive"


def open_store(
    location: StoreLocation,
    mode: StoreMode,
    *,
    overwrite: bool = False,
    schema: str = DEFAULT_SCHEMA,
) -> ReadingStore:
    """Open the store at ``location`` in ``mode`` (``schema`` is the PostgreSQL schema), with
    the archive it remembers attached, so reads span archived months in every mode."""
    if overwrite and mode is not StoreMode.CREATE:
        raise ValueError("only a new store (StoreMode.CREATE) can overwrite an old one")
    if location.dsn is not None:
        store = _open_postgres(location.dsn, mode, overwrite=overwrite, schema=schema)
    else:
        assert location.path is not None
        store = _open_duckdb(location.path, mode, overwrite=overwrite)
    if mode is not StoreMode.CREATE:
        attach_archive(store)
    return store


def remember_archive(store: ReadingStore, root: Path) -> None:
    """Record where ``store``'s archived months are (an absolute path) and read them from there."""
    from kenshin.mdms.archive import ParquetArchive

    store.set_meta(ARCHIVE_META, str(root.resolve()))
    store.archive = ParquetArchive(root)


def attach_archive(store: ReadingStore) -> None:
    """Read archived months from the archive the store remembers; a warning when it is gone
    (the months it held then read as empty, as a store without them)."""
    from kenshin.mdms.archive import ParquetArchive

    recorded = store.get_meta(ARCHIVE_META)
    if recorded is None or store.archive is not None:
        return
    if not Path(recorded).is_dir():
        log.warning(
            "the archive of %s, %s, is missing: its archived months cannot be read",
            store.target,
            recorded,
        )
        return
    store.archive = ParquetArchive(recorded)


def _open_duckdb(path: Path, mode: StoreMode, *, overwrite: bool) -> ReadingStore:
    from kenshin.mdms.duckdb_schema import io_error
    from kenshin.mdms.duckdb_store import DuckDBStore

    if path.is_dir():
        raise InvalidStore(f"{path} is a directory, not a DuckDB file")
    if mode is not StoreMode.CREATE:
        if not path.exists():
            raise InvalidStore(f"{path} does not exist; {FIRST_RUN}")
        return DuckDBStore(path, read_only=mode is StoreMode.READ_ONLY)
    if path.exists() and not overwrite:
        raise InvalidStore(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.is_dir() and path.parent.resolve() != DATA_DIR.resolve():
        # a typo in a directory name would make directories; kenshin's data directory is made
        raise InvalidStore(f"cannot create {path}: directory {path.parent} does not exist")
    try:
        path.unlink(missing_ok=True)
        Path(f"{path}.wal").unlink(missing_ok=True)
        make_private_dir(path.parent)  # X3: a directory kenshin creates for a store is 0700
    except OSError as exc:  # one line with the cause, as DuckDBStore's own (read-only, full)
        refused = io_error("creating it", str(path), exc)
        raise refused or StoreError(f"cannot create DuckDB store {path}: {exc}") from exc
    return DuckDBStore(path)  # the file itself is created 0600 (DuckDBStore)


def _open_postgres(dsn: str, mode: StoreMode, *, overwrite: bool, schema: str) -> ReadingStore:
    from kenshin.mdms.postgres_store import PostgresStore
    from kenshin.postgres import missing_tables

    if mode is not StoreMode.CREATE:
        if missing_tables(dsn, schema, STORE_TABLES):
            where = StoreLocation(dsn=dsn).describe(schema)
            raise InvalidStore(f"{where} holds no kenshin store; {FIRST_RUN}")
        return PostgresStore(dsn, schema=schema, read_only=mode is StoreMode.READ_ONLY)
    store = PostgresStore(dsn, schema=schema)
    if overwrite:
        store.drop_schema()
        store.close()
        return PostgresStore(dsn, schema=schema)
    if store.meter_count():
        store.close()
        where = StoreLocation(dsn=dsn).describe(schema)
        raise InvalidStore(f"{where} already holds a fleet; pass --overwrite to replace it")
    return store


def open_replay_guard(store: ReadingStore) -> ReplayGuard | None:
    """The replay guard head-end workers share through a PostgreSQL store: it holds its row
    locks on the store's own connection until the values are stored, and commits with them;
    ``None`` for DuckDB, whose windows the store keeps."""
    from kenshin.mdms.postgres_store import PostgresStore

    if not isinstance(store, PostgresStore):
        return None
    from kenshin.aroute.replay_postgres import PostgresReplayGuard

    return PostgresReplayGuard(store.dsn, store.schema, hold=True, connection=store.connection)
