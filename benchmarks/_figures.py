"""Figures a benchmark measured, appended as one JSON line per run for ``benchmarks/report.py``.

A script given ``--json PATH`` (or run with ``KENSHIN_BENCH_JSON=PATH``) appends one line: the
script, its arguments, the git commit and the machine it ran on, and its figures. ``make bench``
collects the lines of its scripts in one file and prints them as one table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

ENV = "KENSHIN_BENCH_JSON"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the report. ``anchor``: what the figure is compared with, measured in the same
    run; ``met``: None when there is no target or the run was not at the size it is set for."""

    figure: str
    measured: str
    anchor: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None


def add_json_option(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get(ENV)
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(default) if default else None,
        metavar="PATH",
        help=f"append this run's figures as one JSON line to PATH (default: ${ENV})",
    )


def git_commit() -> str:
    """Short commit of the work tree, with ``+changes`` when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> dict[str, str]:
    """Cores this process may use, memory and CPU model, from /proc (Linux)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cores": str(cores), "memory": "?", "cpu": "?"}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def _without_json(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip or arg.startswith("--json="):
            skip = False
        elif arg == "--json":
            skip = True
        else:
            kept.append(arg)
    return kept


def record(path: Path | None, figures: list[Figure], **context: object) -> None:
    """Append this run's figures to ``path`` (nothing when None)."""
    if path is None:
        return
    line = {
        "script": Path(sys.argv[0]).name,
        "args": _without_json(sys.argv[1:]),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        "figures": [asdict(f) for f in figures],
        **context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")


def met_text(target: str, met: bool | None) -> str:
    if not target or met is None:
        return target
    return f"{target}: " + ("met" if met else "[bold red]NOT met[/]")


def figures_table(figures: list[Figure], title: str) -> Table:
    """The report's columns, for a script printing its own figures."""
    table = Table(title=title, expand=True)
    add_columns(table)
    for f in figures:
        table.add_row(f.figure, f.measured, f.anchor, f.ratio, met_text(f.target, f.met))
    return table


def add_columns(table: Table) -> None:
    table.add_column("figure", min_width=40, ratio=4)
    table.add_column("measured", justify="right", ratio=3)
    table.add_column("anchor measured in the same run", ratio=2)
    table.add_column("ratio", justify="right", min_width=5)
    table.add_column("target", ratio=2)
