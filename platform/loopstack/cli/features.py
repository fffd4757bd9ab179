"""`loopstack features apply` and `loopstack features materialize` (via the API)."""

from __future__ import annotations

from typing import Annotated

import typer

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient

__all__ = ["app"]

app = typer.Typer(
    help="The feature store: apply definitions, load feature rows into the online store.",
    no_args_is_help=True,
)
_SIGNS = {"add": "[green]+[/]", "change": "[yellow]~[/]", "remove": "[red]-[/]"}


@app.command()
def apply(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would change; apply nothing")
    ] = False,
) -> None:
    """Validate feature_repo/ and apply it to the stack's registry (what `up` does too).

    Shows the objects added (+), changed (~) and removed (-). A definition the offline engine
    cannot use is refused, naming the file, the object and the fix. Use this, not `feast apply`:
    Loopstack registers label and push sources at their datasets in the state dir.
    """
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        plan = client.apply_features(dry_run=dry_run)
    for change in plan["changes"]:
        changed = f" ({', '.join(change['properties'])})" if change["properties"] else ""
        console.print(
            f"{_SIGNS.get(change['action'], '?')} {change['kind']} {change['name']}{changed}",
            highlight=False,
        )
    count = len(plan["changes"])
    if not count:
        console.print(f"no changes: the registry matches {plan['repo']}")
    elif plan["applied"]:
        console.print(f"applied {count} change(s) from {plan['repo']}")
    else:
        console.print(f"dry run: {count} change(s) would be applied; nothing changed")


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
