"""Service mode through a real Mosquitto: simulated meters → collectors → MQTT → HES workers →
PostgreSQL, with every message accounted for (issue: A-route and HES).

Starts N ``kenshin hes`` worker processes (shared subscription, PostgreSQL store and replay guard,
Prometheus metrics), then runs the fleet at ``--speed max`` in this process and measures:

- frames forwarded by the collectors vs frames the workers accepted + refused (must be equal);
- frames stored per second, from the fleet's first publish to the last frame stored;
- the 30-min values in PostgreSQL vs the scheduled pushes forwarded (nothing lost, nothing twice).

Usage: python benchmarks/mqtt_ingest.py [--meters 10000] [--days 1] [--workers 2]
       [--mqtt mqtt://127.0.0.1:1883] [--pg postgresql://postgres@127.0.0.1:5432]
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

from kenshin.aroute.frames import FrameType
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig
from kenshin.services import run_fleet

DB = "kenshin_bench"


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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes (and their reaped children), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


def pids_of(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
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
    workers = [
        subprocess.Popen(
            [
                *kenshin,
                "hes",
                "--mqtt",
                args.mqtt,
                "--postgres",
                dsn,
                "--no-duties",
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
    try:
        while any(metric(p, "kenshin_hes_frames_accepted_total") < 0 for p in ports):
            time.sleep(0.2)
        server_pids = {"PostgreSQL": pids_of("postgres"), "Mosquitto": pids_of("mosquitto")}
        cpu_before = {k: cpu_seconds(v) for k, v in server_pids.items()}
        cpu_before["fleet (this process)"] = cpu_seconds([os.getpid()])
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
        cpu = {k: cpu_seconds(v) - cpu_before[k] for k, v in server_pids.items()}
        cpu["fleet (this process)"] = (
            cpu_seconds([os.getpid()]) - cpu_before["fleet (this process)"]
        )
        for i, w in enumerate(workers):
            cpu[f"worker {i}" + (" (duties)" if i == 0 else "")] = cpu_seconds([w.pid])
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=60)
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

    table = Table(
        title=f"{args.meters:,} meters × {args.days:g} day through Mosquitto, "
        f"{args.workers} HES workers → PostgreSQL"
    )
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
    table.add_row("first publish → last frame stored", f"{stored_s:.1f} s", "")
    table.add_row("meter messages stored per second", f"{accepted / stored_s:,.0f}", "≥ 20,000")
    console.print(table)
    console.print(
        "CPU seconds: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
        + f" (wall {stored_s:.1f} s × 2 cores = {2 * stored_s:.0f})"
    )
    ok = accepted + rejected == forwarded and rows30 == distinct30 == pushes
    console.print(
        "accounting: "
        + ("[green]every message accounted for[/]" if ok else "[red]MISMATCH[/]")
        + f"  (worker logs: {logs})"
    )


if __name__ == "__main__":
    main()
