"""`loopstack audit`: who changed what, when, and why (via the API)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient
from loopstack.core.errors import InvalidInput

__all__ = ["audit"]

CSV_COLUMNS = ("seq", "time", "actor", "action", "target", "outcome", "status", "reason")


def _records(
    client: LoopstackClient, params: dict[str, Any], last: int | None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = 0
    while cursor is not None:
        page = client.get("/v1/audit", **params, cursor=cursor, limit=1000)
        items.extend(page["items"])
        cursor = page["next_cursor"]
    return items[-last:] if last else items


def audit(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601)")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor")] = None,
    action: Annotated[
        str | None, typer.Option(help="Action prefix, e.g. models. or decision.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    last: Annotated[int | None, typer.Option(help="Only the last N records")] = None,
    export: Annotated[str, typer.Option(help="table, jsonl or csv")] = "table",
    output: Annotated[
        Path | None, typer.Option(help="Write the export here (default: stdout)")
    ] = None,
) -> None:
    """The audit trail: management actions, refused requests and loop decisions, oldest first."""
    with fail_on_errors():
        if export not in ("table", "jsonl", "csv"):
            raise InvalidInput(f"--export takes table, jsonl or csv, got {export!r}")
        params = {"since": since, "until": until, "actor": actor, "action": action, "model": model}
        with LoopstackClient.from_settings(ctx.obj) as client:
            items = _records(client, params, last)
    if export == "table":
        table = Table("time", "actor", "action", "target", "outcome", "reason")
        for r in items:
            table.add_row(r["time"][:19], r["actor"], r["action"], r["target"], r.get("outcome", "ok"),
                          (r.get("reason") or "")[:80])  # fmt: skip
        console.print(table)
        return
    out = output.open("w", newline="") if output else sys.stdout
    try:
        if export == "jsonl":
            for r in items:
                out.write(json.dumps(r, default=str) + "\n")
        else:
            writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(items)
    finally:
        if output:
            out.close()
    if output:
        console.print(f"{len(items)} audit records written to {output}")
