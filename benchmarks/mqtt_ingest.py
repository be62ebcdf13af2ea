"""Service mode through a real Mosquitto: simulated meters → collectors → MQTT → HES workers →
PostgreSQL, with every message accounted for (issue: A-route and HES).

Starts N ``kenshin hes`` worker processes (shared subscription, PostgreSQL store and replay guard,
Prometheus metrics; worker 0 keeps the duties, as ``kenshin hes`` does by default, the others run
``--no-duties``), then runs the fleet at ``--speed max`` in this process and measures:

- frames forwarded by the collectors vs frames the workers accepted + refused (must be equal);
- frames stored per second, from the fleet's start (its build included) to the last frame stored;
- the 30-min values in PostgreSQL vs the scheduled pushes forwarded (nothing lost, nothing twice);
- CPU seconds over that time of each part, from /proc: the PostgreSQL server (its postmaster,
  found as the parent of this benchmark's backend, and the postmaster's processes), each worker,
  the fleet (this process) and Mosquitto (processes named ``mosquitto``).

Usage: python benchmarks/mqtt_ingest.py [--meters 10000] [--days 1] [--workers 2]
       [--mqtt mqtt://127.0.0.1:1883] [--pg postgresql://postgres@127.0.0.1:5432] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import psycopg
from rich.console import Console
from rich.table import Table

from _figures import Figure, add_json_option, record
from kenshin.app.services import run_fleet
from kenshin.aroute.frames import FrameType
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig

DB = "kenshin_bench"
TARGET_PER_S = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return -1.0
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds of the process and its reaped children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def postmaster_of(dsn: str) -> int | None:
    """The PostgreSQL server's main process: the parent of this connection's backend, when the
    server runs on this machine (None otherwise)."""
    with psycopg.connect(dsn) as conn:
        (backend,) = conn.execute("SELECT pg_backend_pid()").fetchone() or (0,)
        stat = proc_stat(int(backend))
        if stat is None or "postgres" not in title(stat[0]) + title(int(backend)):
            return None
        return stat[0]


def postgres_cpu(postmaster: int, db: str) -> tuple[float, float]:
    """(CPU seconds of the server: postmaster, its processes and the backends it has reaped;
    of which the live backends connected to ``db``)."""
    total = ours = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = proc_stat(pid)
        if stat is None or (pid != postmaster and stat[0] != postmaster):
            continue
        total += stat[1]
        if pid != postmaster and f" {db} " in title(pid):  # "postgres: 15/main: user db host …"
            ours += stat[1]
    return total, ours


def cpu_seconds(pids: list[int]) -> float:
    return sum(stat[1] for stat in map(proc_stat, pids) if stat is not None)


def broker_pids() -> list[int]:
    """The local Mosquitto's processes, by process name (not by command line)."""
    out = subprocess.run(["pgrep", "-x", "mosquitto"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    add_json_option(parser)
    args = parser.parse_args()
    console = Console()

    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    dsn = f"{args.pg}/{DB}"
    start = dt.datetime(2026, 4, 1, tzinfo=JST)
    kenshin = [sys.executable, "-m", "kenshin"]
    common = ["--meters", str(args.meters), "--seed", "1", "--start", "2026-04-01"]
    subprocess.run([*kenshin, "install", *common, "--postgres", dsn], check=True)
    root = f"bench-{uuid.uuid4().hex[:6]}"
    ports = [free_port() for _ in range(args.workers)]
    logs = tempfile.mkdtemp(prefix="kenshin-bench-")
    names = [f"worker {i}" + (" (duties)" if i == 0 else "") for i in range(args.workers)]
    workers = [
        subprocess.Popen(
            [
                *kenshin,
                "hes",
                "--dev-key",  # a simulation: the fleet below uses the public development key
                "--mqtt",
                args.mqtt,
                "--postgres",
                dsn,
                # the first worker keeps the duties (`kenshin hes`'s default), the others not
                *([] if i == 0 else ["--no-duties"]),
                "--worker-id",
                f"{root}-w{i}",
                "--topic-root",
                root,
                "--metrics-port",
                str(port),
            ],
            stderr=open(os.path.join(logs, f"w{i}.log"), "wb"),  # noqa: SIM115
        )
        for i, port in enumerate(ports)
    ]
    postmaster = postmaster_of(dsn)
    broker = broker_pids()
    server_label = "PostgreSQL server (postmaster and all its processes)"
    ours_label = f"PostgreSQL: the backends of {DB} (part of the server's)"
    fleet_label = "fleet: simulate + encrypt + publish (this process)"
    broker_label = "Mosquitto"

    def cpu_now() -> dict[str, float]:
        cpu: dict[str, float] = {}
        if postmaster is not None:
            cpu[server_label], cpu[ours_label] = postgres_cpu(postmaster, DB)
        for name, w in zip(names, workers, strict=True):
            cpu[name] = cpu_seconds([w.pid])
        cpu[fleet_label] = cpu_seconds([os.getpid()])
        if broker:
            cpu[broker_label] = cpu_seconds(broker)
        return cpu

    try:
        while any(metric(p, "kenshin_hes_frames_accepted_total") < 0 for p in ports):
            if any(w.poll() is not None for w in workers):
                raise SystemExit(f"a HES worker stopped at start; its log is in {logs}")
            time.sleep(0.2)
        cpu_before = cpu_now()
        t0 = time.perf_counter()
        run = run_fleet(
            args.mqtt,
            FleetConfig(n_meters=args.meters, start=start, seed=1),
            args.days,
            topic_root=root,
            client_id=f"{root}-fleet",
        )
        fleet_s = time.perf_counter() - t0
        forwarded = run.field.frames_forwarded
        seen, quiet_since = -1.0, time.monotonic()
        while True:
            accepted = sum(metric(p, "kenshin_hes_frames_accepted_total") for p in ports)
            rejected = sum(metric(p, "kenshin_hes_frames_rejected_total") for p in ports)
            stored_s = time.perf_counter() - t0
            if accepted + rejected >= forwarded:
                break
            if accepted + rejected != seen:
                seen, quiet_since = accepted + rejected, time.monotonic()
            elif time.monotonic() - quiet_since > 30:
                console.print("[red]the workers stopped before every frame arrived[/]")
                break
            time.sleep(0.02)
        cpu_after = cpu_now()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=60)
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
    with psycopg.connect(dsn) as conn:
        (rows30,) = conn.execute(
            "SELECT count(*) FROM kenshin.readings WHERE resolution = 30 AND channel = 1 "
            "AND source = 1"
        ).fetchone()
        (distinct30,) = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT meter_key, interval_end FROM kenshin.readings "
            "WHERE resolution = 30 AND channel = 1 AND source = 1) d"
        ).fetchone()
        (rows,) = conn.execute("SELECT count(*) FROM kenshin.readings").fetchone()
    pushes = run.field.forwarded_by_type[int(FrameType.PUSH_SCHEDULED)]

    size = f"{args.meters:,} meters × {args.days:g} day"
    table = Table(title=f"{size} through Mosquitto, {args.workers} HES workers → PostgreSQL")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("target", justify="right")
    table.add_row("frames sent by meters", f"{run.field.frames_sent:,}", "")
    table.add_row("lost in the network model", f"{run.field.frames_lost:,}", "")
    table.add_row(
        "forwarded by collectors (MQTT messages)", f"{forwarded:,} ({run.field.envelopes:,})", ""
    )
    table.add_row(
        "accepted + refused by the workers", f"{int(accepted):,} + {int(rejected):,}", "= forwarded"
    )
    table.add_row(
        "30-min forward values stored (distinct) / pushes forwarded",
        f"{rows30:,} ({distinct30:,}) / {pushes:,}",
        "equal",
    )
    table.add_row("rows stored", f"{rows:,}", "")
    table.add_row("fleet: simulate + encrypt + publish", f"{fleet_s:.1f} s", "")
    table.add_row("fleet start (build included) → last frame stored", f"{stored_s:.1f} s", "")
    rate = accepted / stored_s
    table.add_row("meter messages stored per second", f"{rate:,.0f}", f"≥ {TARGET_PER_S:,}")
    console.print(table)

    cores = len(os.sched_getaffinity(0))
    budget = cores * stored_s
    cpu_table = Table(title=f"CPU seconds, fleet start → last frame stored ({stored_s:.1f} s)")
    cpu_table.add_column("process")
    cpu_table.add_column("CPU s", justify="right")
    cpu_table.add_column(f"share of {cores} cores × wall", justify="right")
    for name, seconds in cpu.items():
        cpu_table.add_row(name, f"{seconds:.1f}", f"{seconds / budget:.0%}")
    console.print(cpu_table)
    if postmaster is None:
        console.print("PostgreSQL is not on this machine: its CPU is not measured")
    if not broker:
        console.print("no local Mosquitto process: the broker's CPU is not measured")
    ok = accepted + rejected == forwarded and rows30 == distinct30 == pushes
    console.print(
        "accounting: "
        + ("[green]every message accounted for[/]" if ok else "[red]MISMATCH[/]")
        + f"  (worker logs: {logs})"
    )

    at_target_size = args.meters == 10_000 and args.days == 1 and args.workers == 2
    figures = [
        Figure(
            f"Mosquitto → {args.workers} HES workers (worker 0 keeping the duties) → "
            f"PostgreSQL, {size}: every message accounted for",
            f"{int(accepted):,} + {int(rejected):,} of {forwarded:,} forwarded; "
            f"30-min values {rows30:,} ({distinct30:,} distinct) of {pushes:,} pushes",
            target="accepted + refused = forwarded, each push stored once",
            met=ok,
        ),
        Figure(
            "  meter messages stored per second (fleet start → last frame stored)",
            f"{rate:,.0f}/s ({stored_s:.1f} s)",
            target=f"≥ {TARGET_PER_S:,}/s at 10,000 × 1 day, 2 workers",
            met=rate >= TARGET_PER_S if at_target_size else None,
        ),
        *(
            Figure(
                f"  CPU s: {name}",
                f"{seconds:.1f} s",
                anchor=f"{cores} cores × {stored_s:.1f} s wall = {budget:.1f} s",
                ratio=f"{seconds / budget:.2f}",
            )
            for name, seconds in cpu.items()
        ),
    ]
    details = [
        "PostgreSQL server: the postmaster (parent of this benchmark's backend) and its "
        "processes, the backends it reaped during the run included; other databases' work "
        "on the same server counts too"
    ]
    record(args.json, figures, details=details)


if __name__ == "__main__":
    main()
