"""Every command still parses: ``kenshin <command> --help`` exits 0 for each of them, the entry
point of pyproject.toml is ``kenshin.cli:main``, and the commands that use a store take
``--store`` with its aliases."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import pytest
import typer

from kenshin.cli import app, main
from tests.test_cli import run

COMMANDS = {
    ("simulate",),
    ("serve",),
    ("up",),
    ("plan-network",),
    ("broute", "serve"),
    ("broute", "wisun"),
    ("broute", "credentials"),
    ("archive",),
    ("vee",),
    ("report",),
    ("export",),
    ("install",),
    ("hes",),
    ("fleet",),
    ("drill", "faults"),
    ("drill", "outage"),
    ("drill", "control"),
    ("connections", "list"),
    ("connections", "add"),
    ("connections", "disconnect"),
    ("connections", "reconnect"),
    ("campaign", "create"),
    ("campaign", "list"),
    ("campaign", "show"),
    ("campaign", "approve"),
    ("campaign", "reject"),
    ("campaign", "abort"),
}
STORE_COMMANDS = {"simulate", "serve", "up", "archive", "vee", "report", "export", "install", "hes"}


def command_paths(command: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The commands below a (typer-vendored) click group, as paths of names."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return {prefix}
    paths: set[tuple[str, ...]] = set()
    for name, sub in subcommands.items():
        paths |= command_paths(sub, (*prefix, name))
    return paths


def test_the_commands_are_all_there() -> None:
    assert command_paths(typer.main.get_command(app)) == COMMANDS


def test_the_entry_point_is_main() -> None:
    (script,) = entry_points(group="console_scripts", name="kenshin")
    assert script.value == "kenshin.cli:main"
    assert script.load() is main


@pytest.mark.parametrize("path", [(), ("broute",), *sorted(COMMANDS)], ids=" ".join)
def test_every_command_parses(capsys, path: tuple[str, ...]) -> None:
    code, out, err = run(capsys, *path, "--help")
    assert code == 0, err
    text = " ".join(out.split())
    assert text.startswith("Usage: kenshin " + " ".join(path)), out
    if path and path[-1] in STORE_COMMANDS and path[0] != "broute":
        assert all(option in text for option in ("--store", "--db", "--postgres")), out
