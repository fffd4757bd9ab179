"""`loopstack features materialize` (via the API)."""

from __future__ import annotations

from typing import Annotated

import typer

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient

__all__ = ["app"]

app = typer.Typer(
    help="The feature store: load feature rows into the online store.", no_args_is_help=True
)


@app.command()
def materialize(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--from", help="Event times from (ISO date or time)")],
    end: Annotated[str, typer.Option("--to", help="Event times up to (ISO date or time)")],
    view: Annotated[
        list[str] | None, typer.Option(help="Only this feature view (repeatable)")
    ] = None,
) -> None:
    """Load the feature views' rows of [--from, --to] into the online store (latest per entity)."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        client.post("/v1/features/materialize", {"start": start, "end": end, "views": view or None})
    console.print(
        f"materialized {', '.join(view) if view else 'every feature view'}: {start} .. {end}"
    )
