"""`loopstack events ...`: tail a topic, list dead letters, replay — through the management API."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient

__all__ = ["app"]

app = typer.Typer(help="Inspect and re-drive events.", no_args_is_help=True)


def _print(items: list[dict[str, Any]]) -> None:
    for item in items:
        console.print_json(json.dumps(item, default=str))


@app.command()
def tail(
    ctx: typer.Context,
    topic: str,
    limit: int = typer.Option(20, "--limit", "-n"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
) -> None:
    """Print the last events of TOPIC (and new ones with --follow)."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        page = client.get(f"/v1/events/{topic}", limit=limit)
        _print(page["items"])
        while follow:
            time.sleep(1.0)
            page = client.get(f"/v1/events/{topic}", limit=500, after=page["cursor"])
            _print(page["items"])


@app.command()
def dlq(ctx: typer.Context, topic: str, limit: int = typer.Option(20, "--limit", "-n")) -> None:
    """List dead letters of TOPIC with their reason and origin."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        items = client.get("/v1/events/dlq", topic=topic, limit=limit)["items"]
    if not items:
        console.print(f"no dead letters on {topic}", highlight=False)
    _print(items)


@app.command()
def replay(
    ctx: typer.Context,
    topic: str,
    since: str = typer.Option(None, "--since", help="ISO time: replay records from then on."),
    until: str = typer.Option(None, "--until", help="ISO time: end of the range."),
    dlq: bool = typer.Option(True, "--dlq/--range", help="Re-drive dead letters (default)."),
) -> None:
    """Re-drive TOPIC's dead letters, or append a time range of TOPIC again (idempotent)."""
    body = {"topic": topic, "source": "dlq" if dlq else "range", "since": since, "until": until}
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        result = client.post("/v1/events/replay", body)
    console.print(
        f"republished {result['republished']}, skipped {result['skipped']} "
        f"{result['reasons'] or ''}"
    )
