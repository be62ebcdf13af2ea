"""A full disk and a read-only file system end in one line naming the cause and the file
(issue 12 item 7), and a failed write leaves the DuckDB store usable.

Disk full is a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG as they
would with ENOSPC) in a child process, which needs no privileges. Read-only is a directory
without write permission, or, for root (whom permissions do not stop), a read-only tmpfs; the
test is skipped when neither can be had.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kenshin.errors import StoreError
from kenshin.mdms.duckdb_store import DuckDBStore

_REPO = Path(__file__).resolve().parents[2]
_LIMIT = 300_000  # bytes: the store file and its WAL outgrow this within the first day
_CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))
"""


def _child(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = _CHILD.format(limit=_LIMIT) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(_REPO)}  # for tests.mdms' row helper
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if line.startswith("kenshin: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def test_disk_full_during_simulate_is_one_line(tmp_path: Path) -> None:
    done = _child(
        """
        from kenshin.cli import main
        main(["simulate", "-n", "1000", "--start", "2026-04-01", "--store", "full.duckdb"])
        """,
        tmp_path,
    )
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr)
    assert "disk full: cannot write to DuckDB store full.duckdb (File too large" in line
    for misleading in ("transaction", "ROLLBACK", "rollback"):
        assert misleading not in line


def test_store_survives_a_full_disk(tmp_path: Path) -> None:
    done = _child(
        """
        import json, resource
        from kenshin.errors import StoreError
        from tests.mdms.test_duckdb_store import NO_REGISTERS, rows

        import datetime as dt
        from kenshin.core.timeslots import JST, to_epoch_us
        from kenshin.mdms.duckdb_store import DuckDBStore

        store = DuckDBStore("s.duckdb")
        day = to_epoch_us(dt.datetime(2026, 4, 1, tzinfo=JST))
        ends = [day + i * 1_800_000_000 for i in range(1, 20_001)]
        big = rows(1, ends, list(range(20_000)), day + 10**12)
        errors = []
        for _ in range(2):  # the second try must fail for the same reason, not on a dead txn
            try:
                store.append(big, NO_REGISTERS)
            except StoreError as exc:
                errors.append(str(exc))
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        store.append(big, NO_REGISTERS)  # space again: the same store takes the rows
        print(json.dumps({"errors": errors, "stored": store.reading_counts()}))
        store.close()
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert len(result["errors"]) == 2
    for message in result["errors"]:
        assert message.startswith("disk full: cannot write to DuckDB store s.duckdb"), message
        assert "\n" not in message
    assert result["stored"] == {"30": 20_000}


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a store (``ro.duckdb``) that cannot be written to."""
    place = tmp_path / "ro"
    place.mkdir()
    if os.geteuid() != 0:
        DuckDBStore(place / "ro.duckdb").close()
        (place / "ro.duckdb").chmod(0o444)
        place.chmod(0o555)
        try:
            yield place
        finally:
            place.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(place)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip("root, and no tmpfs can be mounted: no read-only place to test in")
    try:
        DuckDBStore(place / "ro.duckdb").close()
        subprocess.run(["mount", "-o", "remount,ro", str(place)], check=True)
        yield place
    finally:
        subprocess.run(["umount", str(place)], check=False)


def test_read_only_store_is_one_line(read_only_dir: Path) -> None:
    path = read_only_dir / "ro.duckdb"
    with pytest.raises(StoreError) as info:
        DuckDBStore(path)
    message = str(info.value)
    assert message.startswith(f"read-only: cannot write to DuckDB store {path} (")
    assert "\n" not in message
    reader = DuckDBStore(path, read_only=True)  # reading it still works
    assert reader.meter_count() == 0
    reader.close()


def test_new_store_in_a_read_only_place_is_one_line(
    read_only_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kenshin.cli import main

    target = read_only_dir / "new.duckdb"
    with pytest.raises(SystemExit) as info:
        main(["simulate", "-n", "10", "--start", "2026-04-01", "--store", str(target)])
    assert info.value.code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"kenshin: error: read-only: cannot write to DuckDB store {target}")
