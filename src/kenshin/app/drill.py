"""The fault drill (issue 12): the service mode under one injected fault at a time, compared
with a clean run of the same seed.

Everything runs in private servers on free ports, made for the drill and removed after it, pass
or fail: a Mosquitto with persistence (a snapshot after every queued message, so a kill -9
loses nothing it acknowledged) and a PostgreSQL cluster (``initdb`` in a tmp directory, as the
``postgres`` user when run as root, trust authentication). Each run installs the roster
(``kenshin install``, once per backend, copied for each run), starts ``kenshin hes`` workers
(PostgreSQL: two, worker 0 keeping the duties; DuckDB: one) and ``kenshin fleet --speed max``
for the simulated days, all as separate processes sharing a random A-route master key through
``$KENSHIN_AROUTE_MASTER_KEY``. One fault strikes while the fleet runs:

- ``worker<i>-early|mid|late``: ``kill -9`` of worker i when the workers have accepted 15 %,
  50 % or 85 % of the frames of the clean run, then the worker is started again;
- ``broker``: ``kill -9`` of Mosquitto mid-stream, started again a second later on its port;
- ``database``: ``pg_ctl stop -m immediate`` mid-stream, ``pg_ctl start`` a second later;
- ``disk-full``: the DuckDB worker runs with a file size limit (``RLIMIT_FSIZE``: writes fail
  with EFBIG as they would with ENOSPC) that the store outgrows mid-stream; it must exit with
  one line saying so, and is then started again without the limit ("space again").

When the fleet has exited and the workers are still, they are stopped and the store's readings
from the meters (source push or re-read) are compared with the clean run's: the distinct slots
(meter, channel, resolution, interval end) the clean run stored and this one did not are
*lost*; rows beyond one per slot are *twice*. *Recovery* is the time from the restart of the
broker or database (or worker) to the first new progress: a frame accepted after a broker
restart, an envelope reported stored (committed) after a database or worker restart. Any
process that exits without being told to (or a worker hitting the disk limit with anything but
one clear line) is an unexpected *exit*.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from kenshin.app.drill_servers import (
    Broker,
    Cluster,
    Process,
    Reports,
    free_port,
    metric,
    missing_binaries,
    mosquitto_binary,
    postgres_bindir,
)
from kenshin.aroute.keys import MASTER_KEY_ENV
from kenshin.core.quality import Source
from kenshin.errors import DrillError, InvalidSetting

if TYPE_CHECKING:
    pass

Backend = Literal["postgresql", "duckdb"]
Kind = Literal["worker", "broker", "database", "disk"]

ACCEPTED = "kenshin_hes_frames_accepted_total"
MOMENTS = {"early": 0.15, "mid": 0.5, "late": 0.85}
OUTAGE_S = 1.0  # how long the broker or the database stays down
SETTLE_S = 3.0  # the workers' counts still for this long: the run has settled


@dataclass(frozen=True)
class Fault:
    name: str
    kind: Kind
    backend: Backend
    worker: int = 0
    at: float = 0.5  # share of the clean run's accepted frames when the fault strikes


def _faults() -> dict[str, Fault]:
    faults = [
        Fault(f"worker{w}-{moment}", "worker", "postgresql", w, at)
        for w in (0, 1)
        for moment, at in MOMENTS.items()
    ]
    faults += [
        Fault("broker", "broker", "postgresql"),
        Fault("database", "database", "postgresql"),
        Fault("disk-full", "disk", "duckdb", at=0.5),
    ]
    return {f.name: f for f in faults}


FAULTS = _faults()


def parse_faults(value: str) -> list[Fault]:
    """``all`` or comma-separated fault names (``worker0-mid,broker``); a prefix such as
    ``worker0`` names all of its moments."""
    if value.strip() == "all":
        return list(FAULTS.values())
    chosen: list[Fault] = []
    for part in (p.strip() for p in value.split(",")):
        matches = [f for name, f in FAULTS.items() if name == part or name.startswith(part + "-")]
        if not part or not matches:
            raise InvalidSetting(
                f"unknown fault {part!r}: choose from all, {', '.join(FAULTS)} (or worker0, "
                "worker1)"
            )
        chosen += [f for f in matches if f not in chosen]
    return chosen


@dataclass
class Outcome:
    """One run's row of the drill's table (the clean runs' too, with ``clean is None``)."""

    name: str
    backend: Backend
    stored: int  # distinct slots stored
    rows: int
    clean: int | None = None  # distinct slots of the clean run
    lost: int = 0  # slots the clean run stored and this one did not
    extra: int = 0  # slots this run stored and the clean run did not
    recovery_s: float | None = None
    exits: list[str] = field(default_factory=list)  # unexpected, one line each
    seconds: float = 0.0

    @property
    def twice(self) -> int:
        return self.rows - self.stored

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.twice == 0 and not self.exits


@dataclass(frozen=True)
class DrillConfig:
    meters: int = 20_000
    days: float = 1.0
    seed: int = 1
    start: str = "2026-04-01"
    faults: tuple[Fault, ...] = tuple(FAULTS.values())
    worker_timeout_s: float = 120.0  # the fleet's --worker-timeout
    logs: Path | None = None  # every process's output is copied here at the end


# ---- the drill ----------------------------------------------------------------------------------


Status = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Drill:
    """The servers, the installed rosters and the runs; :meth:`close` removes them all."""

    def __init__(self, config: DrillConfig, status: Status = _quiet) -> None:
        missing = missing_binaries()
        if missing:
            raise InvalidSetting(f"the fault drill needs {' and '.join(missing)}; install them")
        self.config = config
        self.status = status
        self.workdir = Path(tempfile.mkdtemp(prefix="kenshin-drill-"))
        self.env = {
            **os.environ,
            MASTER_KEY_ENV: secrets.token_hex(32),
            "PYTHONUNBUFFERED": "1",
        }
        self.kenshin = [sys.executable, "-m", "kenshin"]
        binary, bindir = mosquitto_binary(), postgres_bindir()
        assert binary is not None and bindir is not None
        self.broker = Broker(self.workdir, binary)
        self.cluster = Cluster(bindir)
        self._processes: list[Process] = []
        self._runs = 0
        self._clean: dict[Backend, tuple[Outcome, Slots, float]] = {}
        self._roster_db: Path | None = None
        self._roster_pg = False
        self.store_bytes = 0  # the largest DuckDB store of a clean run

    def close(self) -> None:
        for process in self._processes:
            process.kill()
            if process.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.popen.wait(timeout=10)
        self.broker.kill()
        if self.config.logs is not None:
            self.config.logs.mkdir(parents=True, exist_ok=True)
            for log in [*self.workdir.glob("*.log"), self.cluster.log]:
                with contextlib.suppress(OSError):
                    shutil.copyfile(log, self.config.logs / log.name)
        self.cluster.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Drill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- set-up

    def start_servers(self) -> None:
        self.status("starting a private Mosquitto and PostgreSQL")
        self.broker.start()
        backends = {f.backend for f in self.config.faults}
        if "postgresql" in backends:
            self.cluster.init()
            self.cluster.start()

    def _install(self, store_args: list[str]) -> None:
        c = self.config
        argv = [*self.kenshin, "install", "--meters", str(c.meters), "--seed", str(c.seed)]
        argv += ["--start", c.start, "--days", str(c.days), *store_args]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DrillError(f"kenshin install failed: {done.stderr.strip()[-300:]}")

    def _store_for(self, backend: Backend, name: str) -> tuple[list[str], str]:
        """A fresh store with the roster installed: its options and its DSN or path."""
        if backend == "postgresql":
            if not self._roster_pg:
                self.status("installing the roster in PostgreSQL")
                self.cluster.execute("CREATE DATABASE drill_roster")
                self._install(["--postgres", self.cluster.dsn("drill_roster")])
                self._roster_pg = True
            database = re.sub(r"\W", "_", f"drill_{self._runs}_{name}")
            self.cluster.execute(f"CREATE DATABASE {database} TEMPLATE drill_roster")
            dsn = self.cluster.dsn(database)
            return ["--postgres", dsn], dsn
        if self._roster_db is None:
            self.status("installing the roster in DuckDB")
            self._roster_db = self.workdir / "roster.duckdb"
            self._install(["--db", str(self._roster_db)])
        path = self.workdir / f"run{self._runs}-{name}.duckdb"
        shutil.copyfile(self._roster_db, path)
        return ["--db", str(path)], str(path)

    # ---- the runs

    def run(self, on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """The clean runs, then each fault; an outcome per run, in that order."""
        self.start_servers()
        outcomes: list[Outcome] = []
        for backend in ("postgresql", "duckdb"):
            if any(f.backend == backend for f in self.config.faults):
                outcome = self.clean(backend)
                outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
        for fault in self.config.faults:
            outcome = self.fault(fault)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
        return outcomes

    def clean(self, backend: Backend) -> Outcome:
        outcome, slots, frames = self._run(f"clean ({backend})", backend, None, 0.0)
        self._clean[backend] = (outcome, slots, frames)
        return outcome

    def fault(self, fault: Fault) -> Outcome:
        if fault.backend not in self._clean:
            self.clean(fault.backend)
        clean, clean_slots, frames = self._clean[fault.backend]
        outcome, slots, _ = self._run(fault.name, fault.backend, fault, frames)
        outcome.clean = clean.stored
        # every value the clean run's meters pushed must be stored (pushed, or re-read when a
        # fault kept it back); re-read answers cross the simulated radio at times of their own,
        # so which of the network's losses they recover varies from run to run: not a loss
        outcome.lost = int(np.setdiff1d(clean_slots.pushed, slots.stored, assume_unique=True).size)
        outcome.extra = int(np.setdiff1d(slots.pushed, clean_slots.pushed, assume_unique=True).size)
        return outcome

    def _run(
        self, name: str, backend: Backend, fault: Fault | None, clean_frames: float
    ) -> tuple[Outcome, Slots, float]:
        started = time.monotonic()
        self._runs += 1
        root = f"drill{self._runs}-{secrets.token_hex(3)}"
        store_args, where = self._store_for(backend, name)
        n_workers = 2 if backend == "postgresql" else 1
        limit = self._disk_limit(where) if fault is not None and fault.kind == "disk" else None
        ports = [free_port() for _ in range(n_workers)]
        workers = [
            Process(
                f"worker{i}",
                [
                    *self.kenshin, "hes", "--mqtt", self.broker.url, *store_args,
                    "--worker-id", f"{root}-w{i}", "--topic-root", root,
                    "--metrics-port", str(port), *([] if i == 0 else ["--no-duties"]),
                ],
                self.env,
                self.workdir / f"{root}-worker{i}",
                limit_bytes=limit if i == 0 else None,
                worker_id=f"{root}-w{i}",
            )
            for i, port in enumerate(ports)
        ]  # fmt: skip
        c = self.config
        fleet = Process(
            "fleet",
            [
                *self.kenshin, "fleet", "--mqtt", self.broker.url, "--meters", str(c.meters),
                "--days", str(c.days), "--speed", "max", "--seed", str(c.seed),
                "--start", c.start, "--topic-root", root,
                "--worker-timeout", str(c.worker_timeout_s),
                "--state", str(self.workdir / f"{root}-fleet.npz"),
            ],
            self.env,
            self.workdir / f"{root}-fleet",
        )  # fmt: skip
        self._processes = [*workers, fleet]
        run = _Run(self, name, fault, workers, ports, fleet, clean_frames)
        reports: Reports | None = None
        try:
            for w in workers:
                w.start()
            run.wait_ready()
            reports = Reports(self.broker.url, root)
            run.reports = reports
            self.status(f"{name}: the fleet runs")
            fleet.start()
            run.watch()
            run.settle()
        finally:
            for w in workers:
                code = w.stop() if w.alive() else None
                if code not in (0, None) and not run.failed:
                    run.exits.append(f"{w.name} exited {code} when stopped: {w.last_lines(1)}")
            fleet.kill()
            if reports is not None:
                reports.close()
        self.status(f"{name}: counting the stored values")
        slots = self._slots(backend, where)
        outcome = Outcome(
            name=name,
            backend=backend,
            stored=int(slots.stored.size),
            rows=slots.rows,
            recovery_s=run.recovery_s,
            exits=run.exits,
            seconds=time.monotonic() - started,
        )
        if backend == "duckdb":
            Path(where).unlink(missing_ok=True)
            Path(where + ".wal").unlink(missing_ok=True)
        else:
            self.cluster.execute(f"DROP DATABASE IF EXISTS {where.rsplit('/', 1)[1]} WITH (FORCE)")
        return outcome, slots, run.peak_frames

    def _disk_limit(self, path: str) -> int:
        """A file size limit the store outgrows mid-stream: halfway between its size with the
        roster and the clean run's largest file."""
        grown = self.store_bytes
        base = Path(path).stat().st_size
        if grown <= base:
            raise DrillError("the clean DuckDB run did not grow its store: no disk to fill")
        return base + int((grown - base) * 0.5)

    # ---- what was stored

    def _slots(self, backend: Backend, where: str) -> Slots:
        """What the meters' values (pushed or re-read) left in the store."""
        base = _epoch_s(self.config.start) - 7 * 86400
        # one int64 per row: meter 25 bits, channel 8, resolution 8, minutes since base 21,
        # and a last bit set for a re-read
        epoch, div = (
            ("epoch(interval_end)", "//") if backend == "duckdb" else
            ("extract(epoch FROM interval_end)", "/")
        )  # fmt: skip
        query = (
            "SELECT (((CAST(meter_key AS BIGINT) << 38) | (CAST(channel AS BIGINT) << 30) "
            f"| (CAST(resolution AS BIGINT) << 22) | ((CAST({epoch} AS BIGINT) - {base}) {div} 60)"
            f") << 1) | CAST(CAST(source = {int(Source.REREAD)} AS INTEGER) AS BIGINT)"
            f" AS k FROM {{}}readings WHERE source IN ({int(Source.METER_PUSH)}, "
            f"{int(Source.REREAD)})"
        )
        if backend == "duckdb":
            import duckdb

            with duckdb.connect(where, read_only=True) as con:
                column = con.execute(query.format("")).fetchnumpy()["k"]
            values = np.asarray(column, dtype=np.int64)
            self.store_bytes = max(self.store_bytes, Path(where).stat().st_size)
        else:
            values = _copy_int64(where, query.format("kenshin."))
        slot = values >> 1
        return Slots(np.unique(slot), np.unique(slot[(values & 1) == 0]), int(values.size))


def _epoch_s(day: str) -> int:
    import datetime as dt

    from kenshin.core.timeslots import JST

    return int(dt.datetime.fromisoformat(day).replace(tzinfo=JST).timestamp())


def _copy_int64(dsn: str, query: str) -> np.ndarray:
    """One BIGINT column of ``query`` through PostgreSQL's binary COPY, as numpy."""
    import psycopg

    buffer = bytearray()
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as copy,
    ):
        for block in copy:
            buffer += block
    header = 19  # signature (11), flags (4), extension length (4, zero here)
    body = bytes(buffer[header:-2])  # the trailer is -1 as int16
    rows = np.frombuffer(body, dtype=np.dtype([("n", ">i2"), ("len", ">i4"), ("v", ">i8")]))
    return rows["v"].astype(np.int64)


@dataclass(frozen=True)
class Slots:
    """A run's stored values, each slot (meter, channel, resolution, interval end) an int64."""

    stored: np.ndarray  # distinct slots, pushed or re-read, sorted
    pushed: np.ndarray  # distinct slots stored from a push, sorted
    rows: int  # rows holding them (more than ``stored``: a value stored twice)


class _Run:
    """One run's watch: strikes the fault, restarts what it killed, notes unexpected exits and
    the recovery time."""

    def __init__(
        self,
        drill: Drill,
        name: str,
        fault: Fault | None,
        workers: list[Process],
        ports: list[int],
        fleet: Process,
        clean_frames: float,
    ) -> None:
        self.drill = drill
        self.name = name
        self.fault = fault
        self.workers = workers
        self.ports = ports
        self.fleet = fleet
        self.threshold = (fault.at * clean_frames) if fault is not None else None
        self.reports: Reports | None = None
        self.exits: list[str] = []
        self.failed = False
        self.struck = fault is None
        self.peak_frames = 0.0
        self.recovery_s: float | None = None
        self._restarted_at: float | None = None  # what recovery is measured from
        self._progress_mark = 0.0  # frames accepted before a broker restart
        # how recovery shows: "frames" accepted (broker), a report by this worker, or by any
        self._measure: str | None = None
        self.timeout_s = 600 + drill.config.meters * drill.config.days * 0.1

    def frames(self) -> float | None:
        """Frames accepted by the workers now (None while one of them cannot be asked)."""
        values = [metric(p, ACCEPTED) for p in self.ports]
        return None if any(v is None for v in values) else sum(v or 0.0 for v in values)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120  # processes importing on a busy machine
        while self.frames() is None:
            for w in self.workers:
                if not w.alive():
                    raise DrillError(f"{w.name} exited at start: {w.last_lines(1)}")
            if time.monotonic() > deadline:
                raise DrillError("the workers did not come up within 120 s")
            time.sleep(0.1)

    def _check_exits(self) -> None:
        for w in self.workers:
            if w.alive():
                continue
            code = w.popen.returncode if w.popen is not None else None
            if self.fault is not None and self.fault.kind == "disk" and w.limit_bytes is not None:
                lines = w.last_lines(2)
                text = w.current_log.read_text(errors="replace")
                if not (
                    code == 1
                    and "Traceback" not in text
                    and lines
                    and lines[-1].startswith("kenshin: error: disk full")
                ):
                    self.exits.append(f"{w.name} at the disk limit exited {code}: {lines}")
                self.drill.status(f"{self.name}: {w.name} stopped at the limit; space again")
                w.limit_bytes = None  # space again
                self.struck = True
                self._restart(w)
                continue
            self.exits.append(f"{w.name} exited {code}: {' | '.join(w.last_lines(2))}")
            self._restart(w)  # to see what the rest of the run loses
        if not self.drill.broker.alive():
            self.exits.append("mosquitto exited")
            self.drill.broker.start()

    def _restart(self, worker: Process) -> None:
        """Start ``worker`` again; recovery is its first commit after that."""
        worker.start()
        self._restarted_at = time.monotonic()
        self._measure = worker.worker_id

    def watch(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while self.fleet.alive():
            if time.monotonic() > deadline:
                self.failed = True
                raise DrillError(f"{self.name}: the fleet did not finish in {self.timeout_s:g} s")
            self._check_exits()
            frames = self.frames()
            if frames is not None:
                self.peak_frames = max(self.peak_frames, frames)
            if not self.struck and self.threshold is not None and frames is not None:
                assert self.fault is not None
                if frames >= self.threshold and self.fault.kind != "disk":
                    self._strike(self.fault)
            self._recovered()
            time.sleep(0.1)
        code = self.fleet.popen.returncode if self.fleet.popen is not None else None
        if code != 0:
            self.exits.append(f"the fleet exited {code}: {' | '.join(self.fleet.last_lines(1))}")
        if not self.struck:
            self.exits.append("the fault never struck (the run ended first)")

    def _strike(self, fault: Fault) -> None:
        self.struck = True
        self.drill.status(f"{self.name}: striking")
        if fault.kind == "worker":
            worker = self.workers[fault.worker]
            worker.kill()
            assert worker.popen is not None
            worker.popen.wait()
            self._restart(worker)
        elif fault.kind == "broker":
            self.drill.broker.kill()
            time.sleep(OUTAGE_S)
            self._progress_mark = self.frames() or 0.0
            self._restarted_at = time.monotonic()
            self._measure = "frames"
            self.drill.broker.start()
        elif fault.kind == "database":
            self.drill.cluster.stop("immediate")
            time.sleep(OUTAGE_S)
            self._restarted_at = time.monotonic()
            self._measure = None
            self.drill.cluster.start()

    def _recovered(self) -> None:
        if self._restarted_at is None or self.recovery_s is not None:
            return
        if self._measure == "frames":
            frames = self.frames()
            moved = frames is not None and frames > self._progress_mark
            at = time.monotonic()
        else:
            assert self.reports is not None
            at = self.reports.at(self._measure)
            moved = at >= self._restarted_at
        if moved:
            self.recovery_s = max(0.0, at - self._restarted_at)

    def settle(self) -> None:
        """Until the workers' counts and reports have been still for :data:`SETTLE_S`."""
        assert self.reports is not None
        deadline = time.monotonic() + 300
        last: tuple[float | None, float] | None = None
        still_since = time.monotonic()
        while True:
            self._check_exits()
            self._recovered()
            now = (self.frames(), self.reports.at())
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= SETTLE_S:
                return
            if time.monotonic() > deadline:
                self.failed = True
                raise DrillError(f"{self.name}: the workers never settled")
            time.sleep(0.2)


@contextlib.contextmanager
def drill(config: DrillConfig, status: Status = _quiet) -> Iterator[Drill]:
    """A :class:`Drill` whose servers, processes and files are gone afterwards, pass or fail."""
    d = Drill(config, status)
    try:
        yield d
    finally:
        d.close()


def run_drill(
    config: DrillConfig,
    status: Status = _quiet,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """The clean runs and each fault of ``config``; see the module's docstring."""
    with drill(config, status) as d:
        return d.run(on_outcome)
