"""`loopstack models ...`: registered versions, aliases, promote, rollback, lineage (via the API)."""

from __future__ import annotations

import json
import time
from pathlib import Path
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
    table = Table("model", "task", "champion", "challenger", "latest", "made by")
    for row in rows:
        aliases = row["aliases"]
        task = row["task"] or f"[red]{row['status']}[/]: {escape(row.get('error', ''))}"
        table.add_row(
            row["model"],
            task,
            aliases.get("champion", "-"),
            aliases.get("challenger", "-"),
            row["latest_version"] or "-",
            row.get("latest_origin") or "-",
        )
    console.print(table)


@app.command()
def register(
    ctx: typer.Context,
    model: str,
    run: str = typer.Option(None, "--run", help="a run of the stack's MLflow that logged it"),
    uri: str = typer.Option(
        None, "--uri", help="an MLflow model URI (runs:/, models:/, s3:, gs:, ...); not a path"
    ),
    path: Path = typer.Option(
        None, "--path", help="a local MLflow model folder (uploaded)", exists=True, file_okay=False
    ),
    artifact_path: str = typer.Option(
        "model", "--artifact-path", help="with --run: the model's name in the run"
    ),
    as_of: str = typer.Option(None, "--as-of", help="model time of the decisions (a replay)"),
    holdout_from: str = typer.Option(
        None, "--holdout-from", help="labelled window the gate holds out from (ISO date)"
    ),
    holdout_to: str = typer.Option(None, "--holdout-to", help="its end, exclusive (ISO date)"),
) -> None:
    """Adopt a model trained elsewhere (sklearn, or pyfunc with a signature): checked against the
    spec, gated against the champion, and rolled out by the loop like a retrained challenger."""
    given = [flag for flag, value in (("--run", run), ("--uri", uri), ("--path", path)) if value]
    if len(given) != 1:
        console.print("[red]error[/]: give exactly one of --run, --uri, --path")
        raise typer.Exit(2)
    with fail_on_errors(), _client(ctx) as client:
        window = (holdout_from, holdout_to) if holdout_from or holdout_to else None
        found = client.register_model(model, run_id=run, artifact_path=artifact_path, uri=uri,
                                      path=path, as_of=as_of, holdout=window)  # fmt: skip
    gate = found["gate"]
    console.print(
        f"{model}: registered version {found['version']} from "
        f"{found['lineage']['origin']['source']['value']}",
        highlight=False,
    )
    console.print(f"gate: {'passed' if gate['passed'] else 'failed'}: {escape(gate['reason'])}",
                  highlight=False)  # fmt: skip
    if found["challenger"]:
        console.print("it is the challenger: the loop shadows it, then canaries and promotes it "
                      f"(follow with `loopstack history {model}`)", highlight=False)  # fmt: skip
    else:
        console.print("it is not the challenger: it stays registered, unserved", highlight=False)
    unknown = ", ".join(found["lineage"]["origin"]["not_known"])
    console.print(f"lineage: trained outside Loopstack; not known: {unknown}", highlight=False)


@app.command()
def show(ctx: typer.Context, model: str) -> None:
    """A model's versions, aliases and gate verdicts."""
    with fail_on_errors(), _client(ctx) as client:
        found = client.get(f"/v1/models/{model}")
    table = Table(
        "version",
        "aliases",
        "created",
        "made by",
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
            _origin(v["lineage"]),
            verdict,
            metrics,
        )
    console.print(table)
    if not found["versions"]:
        console.print(
            f"no versions yet: train one with `loopstack pipeline run train --model {model}`, "
            f"or adopt one trained elsewhere with `loopstack models register {model} --run ID`"
        )


def _origin(lineage: dict[str, Any]) -> str:
    """Who made a version: a Loopstack pipeline run, or outside Loopstack (and from where)."""
    origin = lineage.get("origin")
    if isinstance(origin, dict):
        return f"outside ({origin.get('source', {}).get('kind', '?')})"
    return "pipeline" if lineage.get("pipeline_run_id") else "outside (by hand)"


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
