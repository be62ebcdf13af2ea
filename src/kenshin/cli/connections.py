"""``kenshin connections …``: the external connections registry and the kill switch of a running
system (issue 14 item 5; SPEC X5, X6), through its API with credentials from the environment
(``KENSHIN_CLIENT_ID``, ``KENSHIN_CLIENT_SECRET``; on the installation's console the local admin's
``data/kenshin-admin.json``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kenshin.cli.options import ApiOpt, console, out, split_list
from kenshin.cli.options import api_client as _client

connections_app = typer.Typer(
    help="Principals and external connections of a running system: list, add, cut off "
    "(kill switch), reconnect.",
    no_args_is_help=True,
)

ReasonOpt = Annotated[str, typer.Option(help="Why (kept in the audit trail).")]


def _split(text: str | None, option: str) -> list[str]:
    return [] if not text else split_list(text, option)


@connections_app.command("list")
def list_command(api: ApiOpt = None) -> None:
    """Every principal with its state and its traffic in the monitor's window."""
    items = _client(api).call("GET", "/api/v1/connections")["items"]
    table = Table("name", "kind", "party / roles", "active", "requests", "refusals", "alerts")
    for item in items:
        traffic = item["traffic"]
        table.add_row(
            item["name"],
            item["kind"],
            item["party"] or ", ".join(item["roles"]),
            "yes" if item["active"] else "[bold red]cut off[/]",
            f"{traffic['requests']:,}",
            f"{traffic['refusals']:,}",
            ", ".join(a["kind"] for a in traffic["alerts"]) or "—",
        )
    out.print(table)


@connections_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="Its name, also its OAuth client id.")],
    kind: Annotated[str, typer.Option(help="staff, organisation or device.")],
    party: Annotated[
        str | None, typer.Option(help="retailer, aggregator, …, broute_device, partner_server.")
    ] = None,
    roles: Annotated[str | None, typer.Option(help="Staff roles, comma-separated.")] = None,
    supply_points: Annotated[
        str | None, typer.Option(help="Supply point ids it serves, comma-separated or @FILE.")
    ] = None,
    scopes: Annotated[str | None, typer.Option(help="Scopes, comma-separated.")] = None,
    rate: Annotated[float, typer.Option(min=0.01, max=10_000, help="Requests per second.")] = 20,
    boundary: Annotated[
        str, typer.Option(help="Responsibility boundary and incident contact (X6 ④).")
    ] = "",
    api: ApiOpt = None,
) -> None:
    """Register a principal; its secret is printed once (to stdout) and never again."""
    body = {
        "name": name,
        "kind": kind,
        "roles": _split(roles, "--roles"),
        "party": party,
        "supply_points": _split(supply_points, "--supply-points"),
        "scopes": None if scopes is None else _split(scopes, "--scopes"),
        "rate_per_s": rate,
        "boundary": boundary,
    }
    made = _client(api).call("POST", "/api/v1/principals", body)
    console.print(f"registered {made['name']} ({made['kind']}); its secret, shown once:")
    out.print(made["secret"], markup=False, highlight=False)


@connections_app.command("disconnect")
def disconnect_command(
    name: Annotated[str, typer.Argument(help="The principal to cut off.")],
    reason: ReasonOpt,
    api: ApiOpt = None,
) -> None:
    """The kill switch: refused from its next request, its tokens dead (B-route devices: their
    credentials revoked and sessions ended)."""
    _client(api).call("POST", f"/api/v1/principals/{name}/disconnect", {"reason": reason})
    console.print(f"{name} is cut off")


@connections_app.command("reconnect")
def reconnect_command(
    name: Annotated[str, typer.Argument(help="The principal to let in again.")],
    reason: ReasonOpt,
    api: ApiOpt = None,
) -> None:
    """Let a disconnected principal ask for new tokens again."""
    _client(api).call("POST", f"/api/v1/principals/{name}/reconnect", {"reason": reason})
    console.print(f"{name} is reconnected")
