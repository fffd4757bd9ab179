"""`loopstack models ...`: registered versions, aliases, promote, rollback, lineage (via the API)."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient
from loopstack.core.settings import Settings

__all__ = ["app"]

_FORCE = "End a rollout in flight (recorded as a decision) instead of failing with a conflict."

app = typer.Typer(
    help="Registered models: versions, aliases, promote, rollback, lineage.", no_args_is_help=True
)


def _client(ctx: typer.Context) -> LoopstackClient:
    settings: Settings = ctx.obj
    return LoopstackClient.from_settings(settings)


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """Every model with its champion, challenger and latest version."""
    with fail_on_errors(), _client(ctx) as client:
        rows = client.get("/v1/models")
    table = Table("model", "task", "champion", "challenger", "latest")
    for row in rows:
        aliases = row["aliases"]
        table.add_row(
            row["model"],
            row["task"] or f"[red]broken[/]: {escape(row.get('error', ''))}",
            aliases.get("champion", "-"),
            aliases.get("challenger", "-"),
            row["latest_version"] or "-",
        )
    console.print(table)


@app.command()
def show(ctx: typer.Context, model: str) -> None:
    """A model's versions, aliases and gate verdicts."""
    with fail_on_errors(), _client(ctx) as client:
        found = client.get(f"/v1/models/{model}")
    table = Table(
        "version",
        "aliases",
        "created",
        "gate",
        "metrics",
        title=f"{model} ({found['task']}, target {found['target']})",
    )
    for v in found["versions"]:
        gate = v["lineage"].get("gate", {})
        metrics = ", ".join(
            f"{k}={val:.4g}"
            for k, val in sorted(v["lineage"].get("metrics", {}).items())
            if isinstance(val, float)
        )
        verdict = "passed" if gate.get("passed") else ("failed" if gate else "-")
        table.add_row(
            v["version"],
            ", ".join(v["aliases"]),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(v["created_at"])),
            verdict,
            metrics,
        )
    console.print(table)
    if not found["versions"]:
        console.print(
            f"no versions yet: train one with `loopstack pipeline run train --model {model}`"
        )


@app.command()
def promote(
    ctx: typer.Context,
    model: str,
    version: str = typer.Option(
        None, "--version", help="version to promote (default: the challenger)"
    ),
    reason: str = typer.Option("promoted by hand", "--reason"),
    force: bool = typer.Option(False, "--force", help=_FORCE),
) -> None:
    """Make a version the champion: it answers every request from now on."""
    with fail_on_errors(), _client(ctx) as client:
        result = client.promote(model, version, reason, force=force)
    _moved(model, "champion", result)


@app.command()
def rollback(
    ctx: typer.Context,
    model: str,
    reason: str = typer.Option("rolled back by hand", "--reason"),
    force: bool = typer.Option(False, "--force", help=_FORCE),
) -> None:
    """Restore the previous champion: it answers every request from now on."""
    with fail_on_errors(), _client(ctx) as client:
        result = client.rollback(model, reason, force=force)
    _moved(model, "rolled back; champion", result)


def _moved(model: str, what: str, result: dict[str, Any]) -> None:
    split = result["deployment"]["split"]
    console.print(
        f"{model}: {what} is now version {result['champion']}, serving all traffic "
        f"(split revision {split['revision']})",
        highlight=False,
    )


@app.command()
def lineage(
    ctx: typer.Context,
    model: str,
    version: str = typer.Option("champion", "--version", help="number or alias"),
) -> None:
    """Where a version came from: features, window, data fingerprint, code, run, params, metrics, gate."""
    with fail_on_errors(), _client(ctx) as client:
        result = client.get(f"/v1/models/{model}/versions/{version}/lineage")
    console.print_json(json.dumps(result))
