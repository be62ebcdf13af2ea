"""The fault drill's private servers and processes (:mod:`kenshin.app.drill`).

A Mosquitto with persistence (a snapshot after every change) and a PostgreSQL cluster
(``initdb`` in a tmp directory, as the ``postgres`` user when run as root, trust authentication)
on free ports, made for the drill and removed after it; the ``kenshin`` processes of one run,
each in its own process group so a kill takes its children too; their reports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kenshin.errors import DrillError

if TYPE_CHECKING:
    from kenshin.aroute.link import Delivery


# ---- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )


def postgres_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl (on PATH, or Debian's newest version)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(versions):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None


def missing_binaries() -> list[str]:
    """What the drill needs and this machine lacks (empty when it can run)."""
    missing = []
    if mosquitto_binary() is None:
        missing.append("mosquitto")
    if postgres_bindir() is None:
        missing.append("PostgreSQL's initdb and pg_ctl")
    return missing


def _wait_listening(port: int, alive: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if not alive():
            raise DrillError(f"{what} exited at start")
        if time.monotonic() > deadline:
            raise DrillError(f"{what} did not listen on port {port} within {timeout_s:g} s")
        time.sleep(0.05)


def _kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a process started in its own session, and everything it started."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


class Broker:
    """A private Mosquitto that persists every queued message before the next: after a kill -9
    it gives back what it acknowledged. It can be killed and started again on its port."""

    def __init__(self, workdir: Path, binary: str) -> None:
        import getpass

        self.workdir = workdir
        self.binary = binary
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # as root, mosquitto would drop to a user that cannot write the tmp dir
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "persistence_file drill.db\n"
            # a snapshot after every change (queued message, subscription): a kill -9 loses
            # nothing the broker acknowledged
            "autosave_on_changes true\n"
            "autosave_interval 1\n"
            f"log_dest file {workdir}/mosquitto.log\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.workdir / "mosquitto.stderr").open("ab") as err:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        process = self.process
        _wait_listening(self.port, lambda: process.poll() is None, "mosquitto", 15)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop it with ``sig``: SIGKILL (a crash, the default) or SIGTERM (a clean stop)."""
        if self.process is not None:
            _kill_group(self.process, sig)
            self.process.wait(timeout=30)
            self.process = None


class Cluster:
    """A private PostgreSQL cluster in a tmp directory (trust authentication, its own port),
    run as the ``postgres`` user when the drill runs as root (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="kenshin-drill-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DrillError(f"{Path(args[0]).name} failed: {last[0]}")

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",  # the cluster is thrown away; crashes the drill makes are the server's
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def alive(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql)

    def remove(self) -> None:
        """Stop the server whatever its state, and delete the cluster."""
        if self.alive():
            try:
                self.stop("immediate")
            except (DrillError, subprocess.TimeoutExpired):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


# ---- the processes of one run -----------------------------------------------------------------


@dataclass
class Process:
    """A ``kenshin`` command in its own session, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    limit_bytes: int | None = None  # RLIMIT_FSIZE for the process (the disk-full fault)
    worker_id: str | None = None  # a head-end worker's MQTT id
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        limit = self.limit_bytes

        def limited() -> None:  # runs in the child, before exec
            import resource

            # Python ignores SIGXFSZ itself: a write past the limit fails with EFBIG
            assert limit is not None
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

        self.current_log = self.log.with_suffix(f".{self.starts}.log")
        with self.current_log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=limited if limit is not None else None,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None:
            _kill_group(self.popen, sig)

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code (None if it was killed)."""
        if self.popen is None:
            return None
        self.kill(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            self.popen.wait()
            return None

    def last_lines(self, n: int = 3) -> list[str]:
        text = self.current_log.read_text(errors="replace") if self.current_log.exists() else ""
        return [line for line in text.splitlines() if line.strip()][-n:]


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Reports:
    """The workers' progress reports (envelopes stored, after each commit), with their times."""

    def __init__(self, url: str, root: str) -> None:
        from kenshin.aroute.mqtt import MqttLink, progress_subscription

        self._lock = threading.Lock()
        self.last_at = 0.0  # monotonic time of the last report that moved a count
        self.worker_at: dict[str, float] = {}  # the same, per worker
        self._counts: dict[str, int] = {}
        self.link = MqttLink(
            url,
            f"{root}-drill",
            on_message=self._on,
            subscriptions=(progress_subscription(root),),
        )

    def _on(self, message: Delivery) -> None:
        kind, worker = message.topic.split("/")[-2:]
        if kind != "progress":
            return
        try:  # "COUNT INCARNATION" (kenshin.hes.worker.WorkerReports)
            count = int((message.payload or b"0").split()[0])
        except (ValueError, IndexError):
            return
        with self._lock:
            if self._counts.get(worker) != count:
                self._counts[worker] = count
                self.last_at = self.worker_at[worker] = time.monotonic()

    def at(self, worker: str | None = None) -> float:
        """When a report last moved a count (of ``worker``, or of any worker)."""
        with self._lock:
            return self.last_at if worker is None else self.worker_at.get(worker, 0.0)

    def close(self) -> None:
        self.link.close()
