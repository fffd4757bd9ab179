"""`loopstack pipeline ...`: run pipelines through the API with live progress; compile for Argo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from loopstack.cli.output import console, err_console, fail_on_errors
from loopstack.client import LoopstackClient
from loopstack.core.errors import InvalidInput
from loopstack.core.settings import Settings

__all__ = ["app"]

app = typer.Typer(
    help="Run pipelines (train, batch-score) and compile them for Argo.", no_args_is_help=True
)
_STYLE = {
    "succeeded": "green",
    "cached": "cyan",
    "running": "yellow",
    "failed": "red",
    "skipped": "dim",
    "cancelled": "red",
}


def _table(run: dict[str, Any]) -> Table:
    table = Table(
        "step", "status", "attempts", "seconds", "error", title=f"{run['run_id']} — {run['status']}"
    )
    now = time.time()
    for task in run["tasks"]:
        started, finished = task.get("started_at"), task.get("finished_at")
        seconds = f"{(finished or now) - started:.1f}" if started else ""
        style = _STYLE.get(task["status"])
        table.add_row(
            task["key"],
            f"[{style}]{task['status']}[/]" if style else task["status"],
            str(task["attempts"] or ""),
            seconds,
            task["error"][:80],
        )
    return table


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInput(f"--param takes NAME=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = value
    return out


@app.command("run")
def run(
    ctx: typer.Context,
    name: str,
    model: str = typer.Option(None, "--model", help="model name under models/"),
    start: str = typer.Option(None, "--from", help="window start (ISO date)"),
    end: str = typer.Option(None, "--to", help="window end, exclusive (ISO date)"),
    param: list[str] = typer.Option([], "--param", help="more parameters, NAME=VALUE"),
    detach: bool = typer.Option(False, "--detach", help="return at once with the run id"),
) -> None:
    """Run a pipeline through the configured backend and show its progress (Ctrl-C stops it)."""
    settings: Settings = ctx.obj
    with fail_on_errors(), LoopstackClient.from_settings(settings) as client:
        params = {
            k: v for k, v in {"model": model, "start": start, "end": end}.items() if v is not None
        }
        params.update(_params(param))
        state = client.post(f"/v1/pipelines/{name}/runs", {"params": params})
        if detach:
            console.print(state["run_id"])
            return
        try:
            with Live(_table(state), console=console, refresh_per_second=4) as live:
                while state["status"] == "running":
                    time.sleep(1.0)
                    state = client.get(f"/v1/pipelines/runs/{state['run_id']}")
                    live.update(_table(state))
        except KeyboardInterrupt:
            client.post(f"/v1/pipelines/runs/{state['run_id']}/cancel")
            err_console.print(f"stopped run {state['run_id']}")
            raise typer.Exit(130) from None
    if state["status"] != "succeeded":
        err_console.print(
            f"[bold red]error:[/] {state['error'] or state['status']}", soft_wrap=True
        )
        raise typer.Exit(7)


@app.command("runs")
def runs(ctx: typer.Context, limit: int = typer.Option(20, "--limit")) -> None:
    """The most recent pipeline runs."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        found = client.get("/v1/pipelines/runs", limit=limit)
    table = Table("run", "pipeline", "status", "started", "error")
    for r in found:
        table.add_row(
            r["run_id"],
            r["pipeline"],
            r["status"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"])),
            r["error"][:60],
        )
    console.print(table)


@app.command("status")
def status(ctx: typer.Context, run_id: str) -> None:
    """One run's steps, attempts and errors."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        console.print(_table(client.get(f"/v1/pipelines/runs/{run_id}")))


@app.command("compile")
def compile_(
    ctx: typer.Context,
    name: str,
    out: Path = typer.Option(..., "-o", "--out", help="folder for the YAML manifests"),
) -> None:
    """Compile a pipeline to an Argo WorkflowTemplate (+ a CronWorkflow per scheduled model). Offline."""
    from loopstack.core.modelspec import list_model_specs
    from loopstack.pipelines.compile import compile_cron, compile_pipeline, write_manifests
    from loopstack.pipelines.loader import load_pipeline

    settings: Settings = ctx.obj
    with fail_on_errors():
        pipeline = load_pipeline(settings.pipelines_dir, name)
        objects: list[Any] = [compile_pipeline(pipeline, settings)]
        if "model" in pipeline.param_names:
            for spec in list_model_specs(settings.models_dir):
                if spec.trigger.schedule:
                    objects.append(compile_cron(pipeline, spec, settings, spec.trigger.schedule))
        for path in write_manifests(objects, out):
            console.print(f"wrote {path}")
