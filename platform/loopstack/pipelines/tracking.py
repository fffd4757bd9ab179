"""Record pipeline runs in MLflow: a parent run per pipeline run, a nested run per step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from loopstack.pipelines.context import StepContext

__all__ = ["ensure_parent_run", "step_run", "finish_parent_run"]

_PARENT_FILE = "mlflow_parent_run_id"


def _experiment(client: MlflowClient, pipeline: str) -> str:
    name = f"loopstack/pipeline/{pipeline}"
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def ensure_parent_run(
    tracking_uri: str, pipeline: str, run_dir: Path, params: dict[str, str]
) -> str:
    """The run's parent MLflow run, created by whoever comes first (runner or first step)."""
    marker = run_dir / _PARENT_FILE
    if marker.is_file():
        return marker.read_text().strip()
    client = MlflowClient(tracking_uri)
    run = client.create_run(
        _experiment(client, pipeline),
        run_name=run_dir.name,
        tags={"loopstack.pipeline": pipeline, "loopstack.pipeline_run": run_dir.name},
    )
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value[:6000])
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(run.info.run_id)
    return str(run.info.run_id)


def finish_parent_run(
    tracking_uri: str, run_dir: Path, ok: bool, metrics: dict[str, float]
) -> None:
    """Close the parent run with the pipeline's outcome."""
    marker = run_dir / _PARENT_FILE
    if not marker.is_file():
        return
    client = MlflowClient(tracking_uri)
    run_id = marker.read_text().strip()
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, "FINISHED" if ok else "FAILED")


@contextmanager
def step_run(ctx: StepContext) -> Iterator[str]:
    """A nested MLflow run around one step; the step may log to it with `mlflow.log_*`."""
    uri = ctx.settings.mlflow_tracking_uri
    parent = ensure_parent_run(uri, ctx.pipeline, ctx.run_dir, ctx.params)
    client = MlflowClient(uri)
    experiment = client.get_run(parent).info.experiment_id
    name = ctx.step if ctx.branch is None else f"{ctx.step}[{ctx.branch}]"
    run = client.create_run(
        experiment,
        run_name=name,
        tags={
            "mlflow.parentRunId": parent,
            "loopstack.step": ctx.step,
            "loopstack.pipeline_run": ctx.run_id,
        },
    )
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run.info.run_id):
        yield str(run.info.run_id)
