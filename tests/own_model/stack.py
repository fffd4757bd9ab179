"""The Seattle project on a stack of its own: the stack's environment, waiting on it, serving
the city's facts online and training a model's first version."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from loopstack.client import LoopstackClient

from tests.conftest import run_cli, settings_from, stack_env

__all__ = [
    "WAIT_S",
    "finished_run",
    "materialize_facts",
    "project_env",
    "train_first_version",
    "wait",
]

WAIT_S = 240


def project_env(project: Path, *models: str) -> dict[str, str]:
    """Environment of a stack on `project` whose loop runs `models` only (the project's other
    models stay idle), replaying past days with their event times as request times."""
    env = stack_env(project / ".loopstack")
    env.update({
        "LOOPSTACK_PROJECT_DIR": str(project),
        "LOOPSTACK_LOOP__MODELS": json.dumps(list(models)),
        "LOOPSTACK_FEEDBACK__PUSH_SOURCES": "{}",  # the bundled bike lags are not in this repo
        "LOOPSTACK_SERVING__ACCEPT_REQUEST_TIME": "true",  # a replay of 2012-2015
        "LOOPSTACK_SERVING__ASYNC_INFERENCE": "false",
        "LOOPSTACK_LOOP__TICK_S": "0.5",
        "LOOPSTACK_FEEDBACK__SWEEP_INTERVAL_S": "1",
        "LOOPSTACK_DRIFT__SWEEP_INTERVAL_S": "1",
    })  # fmt: skip
    return env


def wait(what: str, check: Any, timeout: float = WAIT_S) -> Any:
    """The first truthy answer of `check()`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def materialize_facts(env: dict[str, str]) -> None:
    """Serve the city's facts online: one row dated the day before the data set.

    The API imports Feast on first use (~10 s; more on a busy machine, past the CLI's 30 s
    timeout): the call is idempotent, so ask again."""
    for _ in range(4):
        loaded = run_cli(
            env, "features", "materialize", "--from", "2011-12-30", "--to", "2012-01-02"
        )
        if "timed out" not in loaded.stderr:
            break
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr


def finished_run(client: LoopstackClient, run_id: str) -> dict[str, Any]:
    """The pipeline run once it is over; it must have succeeded."""
    run = wait(
        f"pipeline run {run_id}",
        lambda: (r := client.get(f"/v1/pipelines/runs/{run_id}"))["status"] != "running" and r,
        timeout=600,
    )
    assert run["status"] == "succeeded", f"run {run_id} {run['status']}: {run['error']}"
    return dict(run)


def train_first_version(
    env: dict[str, str], model: str, window: tuple[datetime, datetime]
) -> dict[str, Any]:
    """Train `model` on the label days of `window` through the CLI and wait for the loop to
    serve it (with no champion yet, it becomes the champion); the finished run."""
    settings = settings_from(env)
    start, end = (t.date().isoformat() for t in window)
    trained = run_cli(env, "pipeline", "run", "train", "--model", model, "--from", start,
                      "--to", end, "--param", f"as_of={end}T00:00:00Z")  # fmt: skip
    assert trained.returncode == 0, trained.stdout + trained.stderr
    ready = f"http://{settings.host}:{settings.serving.rest_port}/v2/models/{model}/ready"
    with LoopstackClient.from_settings(settings) as client:
        run = finished_run(client, client.get("/v1/pipelines/runs", limit=1)[0]["run_id"])
    wait(
        "the loop to deploy the first version",
        lambda: httpx.get(ready, timeout=30).status_code == 200,
    )
    return run
