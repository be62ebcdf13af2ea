"""``kenshin campaign …``: emergency area campaigns of a running system (issue 16; SPEC R4, R5):
ask, approve, reject, follow and stop them through its API, with credentials from the
environment (``KENSHIN_CLIENT_ID``, ``KENSHIN_CLIENT_SECRET``) or the installation's admin file.
The operator who asks and the approver who approves are two different principals."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from kenshin.cli.options import ApiOpt, out, split_list
from kenshin.cli.options import api_client as _client
from kenshin.control.planner import Rule

campaign_app = typer.Typer(
    help="Emergency area campaigns of a running system: ask, approve, follow, abort.",
    no_args_is_help=True,
)
IdArg = Annotated[int, typer.Argument(min=1, help="The campaign's id.")]
WhyOpt = Annotated[str, typer.Option(help="Why (kept with the campaign).")]


def _show(campaign: dict[str, Any]) -> None:
    table = Table(
        title=f"campaign {campaign['campaign_id']}: {campaign['state']}", show_header=False
    )
    achieved = campaign["achieved_mw"]
    rows = [
        ("asked by / approved by", f"{campaign['actor']} / {campaign['approved_by'] or '—'}"),
        ("reason", campaign["reason"]),
        ("period", f"{campaign['start']} → {campaign['end']}"),
        ("area, feeders", f"{campaign['area'] or 'all'}, {campaign['feeders'] or 'all'}"),
        ("target / planned", f"{campaign['target_mw']:g} MW / {campaign['planned_mw']:g} MW"),
        ("achieved (A3 estimate)", "—" if achieved is None else f"{achieved:g} MW"),
        ("meters limited", f"{campaign['meters_touched']:,}"),
        ("commands", ", ".join(f"{k} {v:,}" for k, v in campaign["commands"].items()) or "—"),
    ]
    if campaign.get("why"):
        rows.append(("why", campaign["why"]))
    for name, value in rows:
        table.add_row(name, str(value))
    out.print(table)
    if campaign.get("per_5min"):
        steps = Table("5 min to", "planned kW", "achieved kW", "meters", title="per 5 minutes")
        for p in campaign["per_5min"]:
            achieved_kw = "—" if p["achieved_kw"] is None else f"{p['achieved_kw']:,.0f}"
            steps.add_row(
                p["at"][11:16], f"{p['planned_kw']:,.0f}", achieved_kw, f"{p['limited_meters']:,}"
            )
        out.print(steps)
    for at_what in campaign.get("timeline", []):
        out.print(f"{at_what['at'][11:19]}  {at_what['what']}", highlight=False)


@campaign_app.command("create")
def create_command(
    target_mw: Annotated[float, typer.Option(min=0.001, max=10_000, help="Reduction [MW].")],
    start: Annotated[str, typer.Option(help="On a half hour, ISO (JST without a zone).")],
    end: Annotated[str, typer.Option(help="On a half hour, 30 min to 6 h after the start.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the campaign).")],
    area: Annotated[str | None, typer.Option(help="Area code or name; default all.")] = None,
    feeders: Annotated[str | None, typer.Option(help="Feeder ids, comma-separated.")] = None,
    priority: Annotated[
        str | None,
        typer.Option(help="Priority register: supply point ids, comma-separated or @FILE."),
    ] = None,
    floor_a: Annotated[int, typer.Option(help="No limit under this ampere step.")] = 10,
    rule: Annotated[
        Rule, typer.Option(help="few: a random few at the floor; all: one cap for all.")
    ] = Rule.FEW,
    rotation: Annotated[
        bool, typer.Option(help="Rule all: rotate the lower step each half hour.")
    ] = True,
    emergency: Annotated[
        bool, typer.Option(help="The approval declares an R4 emergency (lifts X1).")
    ] = True,
    api: ApiOpt = None,
) -> None:
    """Ask for a campaign; it waits for an approver (kenshin campaign approve ID)."""
    body: dict[str, Any] = {
        "reason": reason,
        "target_mw": target_mw,
        "start": start,
        "end": end,
        "area": area,
        "feeders": [int(f) for f in split_list(feeders, "--feeders")] if feeders else [],
        "priority_supply_point_ids": split_list(priority, "--priority") if priority else [],
        "floor_a": floor_a,
        "rule": rule.value,
        "rotation": rotation,
        "emergency": emergency,
    }
    _show(_client(api).call("POST", "/api/v1/campaigns", body))


@campaign_app.command("list")
def list_command(
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    api: ApiOpt = None,
) -> None:
    """Campaigns, newest first."""
    path = "/api/v1/campaigns" + (f"?state={state}" if state else "")
    answer = _client(api).call("GET", path)
    table = Table("id", "state", "target MW", "achieved MW", "start", "end", "asked by", "reason")
    for c in answer["items"]:
        achieved = "—" if c["achieved_mw"] is None else f"{c['achieved_mw']:g}"
        table.add_row(
            str(c["campaign_id"]),
            c["state"],
            f"{c['target_mw']:g}",
            achieved,
            c["start"][:16],
            c["end"][11:16],
            c["actor"],
            c["reason"],
        )
    out.print(table)


@campaign_app.command("show")
def show_command(campaign_id: IdArg, api: ApiOpt = None) -> None:
    """One campaign: planned vs achieved per 5 minutes, commands, timeline."""
    _show(_client(api).call("GET", f"/api/v1/campaigns/{campaign_id}"))


@campaign_app.command("approve")
def approve_command(campaign_id: IdArg, api: ApiOpt = None) -> None:
    """Approve a pending campaign (not the person who asked for it)."""
    _show(_client(api).call("POST", f"/api/v1/campaigns/{campaign_id}/approve", {}))


@campaign_app.command("reject")
def reject_command(campaign_id: IdArg, why: WhyOpt = "", api: ApiOpt = None) -> None:
    """Turn a pending campaign down; nothing is sent."""
    _show(_client(api).call("POST", f"/api/v1/campaigns/{campaign_id}/reject", {"why": why}))


@campaign_app.command("abort")
def abort_command(campaign_id: IdArg, why: WhyOpt = "", api: ApiOpt = None) -> None:
    """Stop a campaign: every meter it limited gets its contract back at once."""
    _show(_client(api).call("POST", f"/api/v1/campaigns/{campaign_id}/abort", {"why": why}))
