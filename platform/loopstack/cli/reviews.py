"""`loopstack reviews`: the review queue and reviewers' decisions (via the API)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient

__all__ = ["app"]

app = typer.Typer(help="Predictions flagged for human review, and their decisions.")


def _value(raw: str) -> Any:
    """A label as typed: 1, 0.5, rain (JSON when it parses, else the text)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@app.callback(invoke_without_command=True)
def queue(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    version: Annotated[str | None, typer.Option(help="Only this version")] = None,
    status: Annotated[str, typer.Option(help="pending, decided or all")] = "pending",
    limit: Annotated[int, typer.Option(help="At most this many")] = 50,
) -> None:
    """List flagged predictions (oldest first) and the override rate per version."""
    if ctx.invoked_subcommand is not None:
        return
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        page = client.get("/v1/reviews", model=model, version=version, status=status, limit=limit)
    table = Table("prediction id", "model", "version", "flagged", "reasons", "margin",
                  "prediction", "decision", "by")  # fmt: skip
    for r in page["reviews"]:
        decision = r["decision"] or {}
        margin = "-" if r["margin"] is None else f"{r['margin']:.3f}"
        table.add_row(r["prediction_id"], r["model"], r["version"], r["flagged_at"][:19],
                      ", ".join(r["reasons"]), margin, json.dumps(r["prediction"]),
                      json.dumps(decision.get("outcome")) if decision else "-",
                      decision.get("reviewer") or "-")  # fmt: skip
    console.print(table)
    for s in page["summary"]:
        rate = "-" if s["override_rate"] is None else f"{s['override_rate']:.1%}"
        console.print(
            f"{s['model']} v{s['version']}: {s['pending']} pending, {s['decided']} decided, "
            f"{s['overridden']} overridden (override rate {rate})",
            highlight=False,
        )


@app.command("decide")
def decide(
    ctx: typer.Context,
    prediction_id: Annotated[str, typer.Argument(help="A flagged prediction's id")],
    outcome: Annotated[
        str, typer.Option(help="The true value: one of the model's classes (e.g. 1, rain)")
    ],
    note: Annotated[str | None, typer.Option(help="Why (kept with the decision)")] = None,
) -> None:
    """Record your decision on a flagged prediction (a human outcome; you are the reviewer)."""
    body = {"outcome": _value(outcome), "note": note}
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        done = client.post(f"/v1/reviews/{prediction_id}/decision", body)
    console.print(f"decision on {prediction_id} accepted (outcome event {done['event_id']})")
