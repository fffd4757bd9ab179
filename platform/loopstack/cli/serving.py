"""`loopstack deploy` and `loopstack traffic`: clients of the management API's serving routes."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient
from loopstack.core.settings import Settings

__all__ = ["deploy", "register", "traffic"]


def _show(deployment: dict[str, Any]) -> None:
    split = deployment["split"]
    table = Table(show_header=False, box=None)
    for key in ("model", "champion", "challenger", "mode", "canary_percent", "sticky", "revision"):
        value = split.get(key)
        if value not in (None, "", 0, False) or key in ("model", "champion", "mode", "revision"):
            table.add_row(key, str(value))
    table.add_row("ready", str(deployment.get("ready")))
    if deployment.get("detail"):
        table.add_row("detail", deployment["detail"])
    console.print(table)


def deploy(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[
        str, typer.Option("--version", "-v", help="Version number or alias (pinned now).")
    ],
    canary: Annotated[
        int | None, typer.Option(help="Send PCT% of requests to this version.")
    ] = None,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Mirror requests to this version.")
    ] = False,
    sticky: Annotated[bool, typer.Option("--sticky", help="Canary by entity-key hash.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="End a rollout in flight (recorded) instead of failing."),
    ] = False,
) -> None:
    """Deploy a model version as champion (a promote), canary (--canary PCT) or shadow (--shadow)."""
    settings: Settings = ctx.obj
    with fail_on_errors(), LoopstackClient.from_settings(settings) as client:
        _show(
            client.deploy(model, version, canary=canary, shadow=shadow, sticky=sticky, force=force)
        )


def traffic(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(help="Model name; all deployments if omitted.")
    ] = None,
) -> None:
    """Show a model's traffic split (or every deployment)."""
    settings: Settings = ctx.obj
    with fail_on_errors(), LoopstackClient.from_settings(settings) as client:
        if model is not None:
            _show(client.get(f"/v1/models/{model}/traffic"))
            return
        for item in client.get("/v1/deployments")["items"]:
            _show(item)


def register(app: typer.Typer) -> None:
    """Add `deploy` and `traffic` to the `loopstack` command."""
    app.command()(deploy)
    app.command()(traffic)
