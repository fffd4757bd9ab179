"""Record pipeline runs in MLflow: a parent run per pipeline run, a nested run per step.

The runner talks to MLflow's REST API directly: MLflow's client loads every installed
request-header plugin on first use (Feast's costs ~7 s), which a step, forked warm, has paid
already but the runner would pay on every run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from loopstack.pipelines.context import StepContext
from loopstack.pipelines.errors import TrackingUnavailable

__all__ = ["ensure_parent_run", "step_run", "finish_parent_run"]

_PARENT_FILE = "mlflow_parent_run_id"


def _call(tracking_uri: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    # The same bound as MLflow's own client in this process (`mlflow.request_timeout_s`).
    waited = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"))
    try:
        response = httpx.request(
            method, f"{tracking_uri}/api/2.0/mlflow/{path}", timeout=waited, **kwargs
        )
    except httpx.TimeoutException as exc:
        raise TrackingUnavailable(tracking_uri, f"{path} timed out after {waited:g} s") from exc
    except httpx.HTTPError as exc:
        raise TrackingUnavailable(tracking_uri, f"{path}: {exc}") from exc
    if response.status_code == 404 and path.startswith("experiments/get-by-name"):
        return {}
    if not response.is_success:
        raise TrackingUnavailable(
            tracking_uri, f"{path}: HTTP {response.status_code} {response.text[:300]}"
        )
    return dict(response.json())


def _experiment(tracking_uri: str, pipeline: str) -> str:
    name = f"loopstack/pipeline/{pipeline}"
    found = _call(tracking_uri, "GET", "experiments/get-by-name", params={"experiment_name": name})
    if found:
        return str(found["experiment"]["experiment_id"])
    return str(
        _call(tracking_uri, "POST", "experiments/create", json={"name": name})["experiment_id"]
    )


def ensure_parent_run(
    tracking_uri: str, pipeline: str, run_dir: Path, params: dict[str, str]
) -> str:
    """The run's parent MLflow run, created by whoever comes first (runner or first step)."""
    marker = run_dir / _PARENT_FILE
    if marker.is_file():
        return marker.read_text().strip()
    tags = {"loopstack.pipeline": pipeline, "loopstack.pipeline_run": run_dir.name,
            "mlflow.runName": run_dir.name}  # fmt: skip
    run = _call(tracking_uri, "POST", "runs/create", json={
        "experiment_id": _experiment(tracking_uri, pipeline), "run_name": run_dir.name,
        "start_time": int(time.time() * 1000),
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
    })["run"]  # fmt: skip
    run_id = str(run["info"]["run_id"])
    if params:
        _call(tracking_uri, "POST", "runs/log-batch", json={
            "run_id": run_id, "params": [{"key": k, "value": v[:6000]} for k, v in params.items()]})  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(run_id)
    return run_id


def finish_parent_run(
    tracking_uri: str, run_dir: Path, ok: bool, metrics: dict[str, float]
) -> None:
    """Close the parent run with the pipeline's outcome."""
    marker = run_dir / _PARENT_FILE
    if not marker.is_file():
        return
    run_id = marker.read_text().strip()
    now = int(time.time() * 1000)
    if metrics:
        _call(tracking_uri, "POST", "runs/log-batch", json={"run_id": run_id, "metrics": [
            {"key": k, "value": v, "timestamp": now, "step": 0} for k, v in metrics.items()]})  # fmt: skip
    _call(tracking_uri, "POST", "runs/update",
          json={"run_id": run_id, "status": "FINISHED" if ok else "FAILED", "end_time": now})  # fmt: skip


@contextmanager
def step_run(ctx: StepContext) -> Iterator[str]:
    """A nested MLflow run around one step; the step may log to it with `mlflow.log_*`."""
    import mlflow
    from mlflow.tracking import MlflowClient

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
