"""The embedded runner on small pipelines of its own: cache, retries, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from loopstack.core.processes import pid_alive
from loopstack.core.settings import Settings
from loopstack.pipelines.errors import StepFailed
from loopstack.pipelines.loader import load_pipeline
from loopstack.pipelines.runner import EmbeddedRunner
from loopstack.pipelines.state import RunState

from tests.conftest import Stack

pytestmark = pytest.mark.integration

PIPELINE = """
import os, time
from pathlib import Path
from loopstack.pipelines.dsl import Param, Pipeline

pipeline = Pipeline(name="toy", params=[Param("items", default='["a", "b"]'), Param("mode", default="ok")])


def first(ctx):
    ctx.output("value.txt").write_text("{value}")


def fan(ctx):
    if ctx.params["mode"] == "slow":
        time.sleep(120)
    marker = ctx.run_dir / f"attempts-{{ctx.branch}}"
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if ctx.params["mode"] == "flaky" and attempts < 2:
        raise RuntimeError("transient failure")
    if ctx.params["mode"] == "broken":
        raise RuntimeError("this step always fails")
    if ctx.params["mode"] == "empty":
        from datetime import datetime
        from loopstack.features.errors import EmptyWindow
        raise EmptyWindow("toy", "labels", datetime(2011, 3, 1), datetime(2011, 3, 8))
    if ctx.params["mode"] == "bug":
        raise KeyError("no_such_column")
    ctx.output("out.txt").write_text(ctx.input("first", "value.txt").read_text() + ctx.branch)


pipeline.step("first")(first)
pipeline.step("fan", after=("first",), sweep="items", retries=1)(fan)
"""


def _project(tmp_path: Path, value: str = "v1") -> Path:
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    (tmp_path / "pipelines" / "toy.py").write_text(textwrap.dedent(PIPELINE.format(value=value)))
    return tmp_path


def _settings(stack: Stack, project: Path, fork_server: bool = True) -> Settings:
    return Settings(
        project_dir=project,
        state_dir=project / "state",
        mlflow={"tracking_uri": stack.settings.mlflow_tracking_uri},
        pipelines={"retry_backoff_s": 0.1, "fork_server": fork_server},
    )


def _run(settings: Settings, **params: str) -> RunState:
    pipeline = load_pipeline(settings.pipelines_dir, "toy")
    runner = EmbeddedRunner(settings)
    return runner.run(pipeline, runner.prepare(pipeline, params))


def test_changing_a_steps_code_misses_the_cache(stack: Stack, tmp_path: Path) -> None:
    settings = _settings(stack, _project(tmp_path))
    first = _run(settings)
    assert {t.status for t in first.tasks} == {"succeeded"}
    again = _run(settings)
    assert {t.status for t in again.tasks} == {"cached"}
    assert (Path(again.run_dir) / "steps/fan/branch-b/out.txt").read_text() == "v1b"
    _project(tmp_path, value="v2")  # edit the step's code
    edited = _run(settings)
    assert {t.status for t in edited.tasks} == {"succeeded"}
    assert (Path(edited.run_dir) / "steps/fan/branch-b/out.txt").read_text() == "v2b"


def test_a_transient_failure_is_retried(stack: Stack, tmp_path: Path) -> None:
    state = _run(_settings(stack, _project(tmp_path)), mode="flaky")
    fan = [t for t in state.tasks if t.step == "fan"]
    assert all(t.status == "succeeded" and t.attempts == 2 for t in fan)


def test_a_step_failing_after_its_retries_names_its_log(stack: Stack, tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="this step always fails") as failure:
        _run(_settings(stack, _project(tmp_path)), mode="broken")
    assert "after 2 attempt(s)" in failure.value.message and ".log" in failure.value.message


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("empty", "EmptyWindow: model 'toy': label source 'labels' has no rows in"),
        ("bug", "KeyError: 'no_such_column'"),
    ],
)
def test_a_deterministic_failure_fails_at_once_with_its_message(
    stack: Stack, tmp_path: Path, mode: str, reason: str
) -> None:
    with pytest.raises(StepFailed) as failure:
        _run(_settings(stack, _project(tmp_path)), mode=mode)
    assert failure.value.permanent and reason in failure.value.message
    assert "not retried" in failure.value.message
    (run_dir,) = (tmp_path / "state" / "pipelines" / "runs").iterdir()
    assert [(run_dir / f"attempts-{b}").read_text() for b in "ab"] == ["1", "1"]


# Steps are forked from a warm server by default, or started as plain processes.
@pytest.mark.parametrize("fork_server", [True, False], ids=["forked", "plain"])
def test_sigint_stops_every_step_process(stack: Stack, tmp_path: Path, fork_server: bool) -> None:
    settings = _settings(stack, _project(tmp_path), fork_server)
    pipeline = load_pipeline(settings.pipelines_dir, "toy")
    state = EmbeddedRunner(settings).prepare(pipeline, {"mode": "slow"})
    runner = subprocess.Popen(
        [sys.executable, "-m", "loopstack.pipelines.run", "--run-dir", state.run_dir],
        env={**settings.as_env(), "PATH": "/usr/bin:/bin"},
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = RunState.load(Path(state.run_dir))
        running = [t for t in current.tasks if t.step == "fan" and t.pids]
        if len(running) == 2:
            break
        time.sleep(0.2)
    assert len(running) == 2, "both sweep branches should be running"
    pids = [pid for t in running for pid in t.pids]
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=60) == 130
    assert not any(pid_alive(pid) for pid in pids)
    final = RunState.load(Path(state.run_dir))
    assert final.status == "cancelled"
