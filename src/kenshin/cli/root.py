"""The ``kenshin`` command: every command group registered on one typer app, and :func:`main`,
which turns bad arguments into a one-line error and exit code 2."""

from __future__ import annotations

import os
import sys

import typer

from kenshin.app.allocator import cap_malloc_arenas
from kenshin.cli.broute import broute_app
from kenshin.cli.campaign import campaign_app
from kenshin.cli.connections import connections_app
from kenshin.cli.drill import drill_app
from kenshin.cli.export import export_command
from kenshin.cli.mdms import archive_command, vee_command
from kenshin.cli.options import console
from kenshin.cli.plan_network import plan_network_command
from kenshin.cli.report import report_command
from kenshin.cli.serve import serve, up
from kenshin.cli.service import fleet, hes, install
from kenshin.cli.simulate import simulate
from kenshin.errors import InvalidInput, KenshinError
from kenshin.secrecy import PRIVATE_UMASK

app = typer.Typer(
    name="kenshin",
    help="kenshin (検針): Japan's next-generation smart meter system.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"kenshin {version('kenshin')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """kenshin (検針): Japan's next-generation smart meter system."""


app.command()(simulate)
app.command()(serve)
app.command()(up)
app.command("plan-network")(plan_network_command)
app.add_typer(broute_app, name="broute")
app.command("archive")(archive_command)
app.command("vee")(vee_command)
app.command("report")(report_command)
app.command("export")(export_command)
app.command()(install)
app.command()(hes)
app.command()(fleet)
app.add_typer(drill_app, name="drill")
app.add_typer(connections_app, name="connections")
app.add_typer(campaign_app, name="campaign")

# typer raises click's UsageError (vendored in recent typer); find it through BadParameter
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors and exit code 2 for bad arguments."""
    # X3: what the commands create (stores, DuckDB's .wal and spill files, Parquet archives,
    # credentials, their directories) is the user's alone, also files libraries create
    # themselves: a process umask, set before any thread starts, as PostgreSQL's server does
    saved_umask = os.umask(PRIVATE_UMASK)
    os.umask(saved_umask | PRIVATE_UMASK)
    cap_malloc_arenas()  # before the sweep's and the writer's threads (kenshin.app.allocator)
    try:
        _main(argv)
    finally:
        os.umask(saved_umask)  # for a caller in the same process (the tests)


def _main(argv: list[str] | None) -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="kenshin", standalone_mode=False)
    except _UsageError as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        if message:  # empty when typer has printed the help instead
            _error_line(message)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except InvalidInput as exc:
        _error_line(str(exc))
        sys.exit(2)
    except KenshinError as exc:
        _error_line(str(exc))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _error_line(message: str) -> None:
    """``kenshin: error: …`` on one line: a library's message (libpq's hint, a traceback's
    text) may span several, and a script reading stderr wants one."""
    text = " ".join(message.split())
    console.print(f"kenshin: error: {text}", markup=False, highlight=False, soft_wrap=True)
