"""`loopstack why PREDICTION_ID`: why a prediction came out as it did (via the API)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient

__all__ = ["why"]

_LINEAGE = ("training_window", "data_fingerprint", "feature_service", "pipeline_run_id", "params")


def why(
    ctx: typer.Context,
    prediction_id: Annotated[str, typer.Argument(help="Prediction id (from the answer)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw answer as JSON")] = False,
) -> None:
    """Inputs, features, model version and lineage, output, explanation and outcome of a prediction."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        data = client.get(f"/v1/predictions/{prediction_id}/why")
    if as_json:
        console.print_json(json.dumps(data))
        return
    model = data["model"]
    console.print(
        f"prediction [bold]{data['prediction_id']}[/bold]: answered by {model['name']} "
        f"v{model['version']} ({data['route']}) at {data['request_time']}, status {data['status']}",
        highlight=False,
    )
    _lineage(model)
    _values("inputs", "field", (data["inputs"] or {}).items())
    features = data["features"]
    if features:
        table = Table(
            "feature",
            "value",
            "feature-store time",
            title=f"features ({features['feature_service']})",
        )
        for f in features["values"]:
            table.add_row(f["feature"], _text(f["value"]), f["event_timestamp"] or "-")
        console.print(table)
    output = data["output"] or {}
    if data["status"] == "ok":
        console.print(f"output: {_text(output.get('prediction'))}", highlight=False)
    else:
        console.print(f"error: {data['error']}", highlight=False)
    _explanation(data["explanation"], data["explanation_note"])
    outcome = data["outcome"]
    if outcome is None:
        console.print("outcome: not known yet")
    else:
        console.print(
            f"outcome: {_text(outcome['value'])} ({outcome['source']}, observed {outcome['observed_at']})",
            highlight=False,
        )


def _lineage(model: dict[str, Any]) -> None:
    lineage = model.get("lineage")
    if lineage is None:
        console.print(f"lineage: unknown ({model.get('lineage_note')})", highlight=False)
        return
    parts = [f"run {model['run_id'] or '-'}"]
    parts += [f"{key} {_text(lineage[key])}" for key in _LINEAGE if key in lineage]
    console.print("lineage: " + "; ".join(parts), highlight=False)


def _values(title: str, header: str, items: Any) -> None:
    table = Table(header, "value", title=title)
    for name, value in items:
        table.add_row(str(name), _text(value))
    console.print(table)


def _explanation(explanation: dict[str, Any] | None, note: str | None) -> None:
    if explanation is None:
        console.print(f"explanation: {note}", highlight=False)
        return
    table = Table(
        "feature",
        "value",
        "contribution",
        title=f"why: {explanation['output']} {explanation['output_value']:.4g} = "
        f"base {explanation['base_value']:.4g} + contributions",
    )
    for c in explanation["contributions"]:
        table.add_row(c["feature"], _text(c.get("value")), f"{c['contribution']:+.4g}")
    table.add_row("(others)", "", f"{explanation['others']:+.4g}")
    console.print(table)


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)
