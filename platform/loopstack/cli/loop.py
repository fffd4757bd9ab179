"""`loopstack retrain` and `loopstack history` (via the API)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient
from loopstack.core.errors import InvalidInput

__all__ = ["history", "retrain"]


def retrain(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name")],
    reason: Annotated[
        str, typer.Option(help="Why (recorded with the decision)")
    ] = "retraining requested by hand",
    param: Annotated[
        list[str] | None, typer.Option(help="Extra pipeline parameter NAME=VALUE")
    ] = None,
) -> None:
    """Retrain MODEL now through the loop (refused while a retraining or rollout is in flight)."""
    with fail_on_errors():
        params = dict(_pair(p) for p in param or [])
        with LoopstackClient.from_settings(ctx.obj) as client:
            decision = client.post(
                f"/v1/models/{model}/retrain", {"reason": reason, "params": params}
            )
    console.print(f"trigger fired: pipeline run [bold]{decision['pipeline_run_id']}[/bold] "
                  f"({decision['evidence']['params']['start']} .. {decision['evidence']['params']['end']})")  # fmt: skip
    console.print(f"follow it with `loopstack pipeline show {decision['pipeline_run_id']}`")


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise InvalidInput(f"--param takes NAME=VALUE, got {text!r}")
    return name, value


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=round(seconds)))


def _summary(evidence: dict[str, Any]) -> str:
    keys = ("trigger_source", "n", "p_better", "p_worse", "status", "mode", "percent", "actor")
    parts = []
    for key in keys:
        value = evidence.get(key)
        if value is not None:
            parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def history(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name")],
    last: Annotated[int, typer.Option(help="Newest decisions shown", min=1)] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw history as JSON")] = False,
) -> None:
    """MODEL's loop decisions with their evidence, and its model-ops metrics."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        data = client.get(f"/v1/models/{model}/history")
    if as_json:
        console.print_json(json.dumps(data))
        return
    table = Table(
        "model time", "decision", "version", "reason", "evidence", title=f"decisions of {model}"
    )
    for d in data["decisions"][-last:]:
        table.add_row(
            d["at"][:16], d["kind"], d["version"] or "-", d["reason"], _summary(d["evidence"])
        )
    console.print(table)
    m = data["metrics"]
    window = m.get("window") or {}
    span = (f"{(window.get('start') or '-')[:16]} .. {(window.get('end') or '-')[:16]}, "
            f"{window.get('decisions', 0)} decisions") if window else "model time"  # fmt: skip
    ops = Table("metric", "value", title=f"model-ops metrics ({span})")
    rate = m["change_failure_rate"]
    frequency = m["deployment_frequency_per_week"]
    notes = m.get("notes") or {}
    frequency_text = (
        f"{frequency:.2f}/week"
        if frequency is not None
        else notes.get("deployment_frequency_per_week", "-")
    )
    for name, value in (
        ("retrainings", str(m["retrainings"])),
        ("promotions", str(m["promotions"])),
        ("rollbacks", str(m["rollbacks"])),
        ("deployment frequency", frequency_text),
        ("lead time (trigger → promoted)", _duration(m["lead_time_s"])),
        ("change-failure rate", f"{rate:.0%}" if rate is not None else "-"),
        ("time to recover", _duration(m["time_to_recover_s"])),
        ("retraining cadence", _duration(m["retraining_cadence_s"])),
    ):
        ops.add_row(name, value)
    console.print(ops)
    if data.get("failure"):
        console.print(f"[red]loop controller cannot advance {model}[/red] since "
                      f"{data['failure']['since'][:16]}: {data['failure']['reason']}")  # fmt: skip
    state = data["state"]
    if state:
        console.print(f"loop state: [bold]{state['phase']}[/bold]"
                      + (f" (challenger v{state['challenger']})" if state.get("challenger") else ""))  # fmt: skip
