"""One table of the figures benchmark scripts wrote with ``--json PATH`` (``make bench``).

Columns: figure | measured | anchor measured in the same run | ratio | target, one section per
script run, then the commit and machine each run came from and the notes of each script.

Usage: ``python benchmarks/report.py [PATH ...]`` (default: $KENSHIN_BENCH_JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from _figures import ENV, Figure, add_columns, git_commit, machine, met_text


def load(paths: list[Path]) -> list[dict]:
    runs = []
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    runs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{n}: not a JSON line ({e})") from None
    return runs


def describe(info: dict[str, str]) -> str:
    return f"{info['cores']} cores, {info['memory']}, {info['cpu']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.paths or ([Path(os.environ[ENV])] if os.environ.get(ENV) else [])
    if not paths:
        parser.error(f"give the JSON lines file(s), or set {ENV}")
    runs = load(paths)
    if not runs:
        raise SystemExit(f"no figures in {', '.join(map(str, paths))}")
    console = Console() if sys.stdout.isatty() else Console(width=200)

    commits = sorted({run["commit"] for run in runs})
    machines = sorted({describe(run["machine"]) for run in runs})
    title = f"kenshin benchmarks: commit {', '.join(commits)} on {'; '.join(machines)}"
    table = Table(title=title, title_justify="left", expand=True)
    add_columns(table)
    met = missed = unjudged = 0
    for run in runs:
        table.add_section()
        table.add_row(f"[bold]{run['script']}[/] {' '.join(run['args'])}".rstrip())
        for raw in run["figures"]:
            f = Figure(**raw)
            table.add_row(f.figure, f.measured, f.anchor, f.ratio, met_text(f.target, f.met))
            if f.target:
                met += f.met is True
                missed += f.met is False
                unjudged += f.met is None
    console.print(table)
    console.print(
        f"targets: {met} met, {missed} not met"
        + (f", {unjudged} not judged (run at another size than the target's)" if unjudged else "")
    )
    head = git_commit()
    if head not in commits:
        console.print(f"[yellow]the work tree is now at {head}[/]")
    here = describe(machine())
    if machines != [here]:
        console.print(f"[yellow]this machine: {here}[/]")
    for run in runs:
        notes = run.get("details") or []
        if notes:
            console.print(f"[bold]{run['script']}[/] ({run['finished']}, {run['commit']}):")
            for note in notes:
                console.print(f"  {note}")


if __name__ == "__main__":
    main()
