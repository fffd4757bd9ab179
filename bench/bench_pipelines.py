"""Bench: the train pipeline's wall time through the embedded runner, against calling the same
step functions one after another in one process (same data, same MLflow, cache off).

Run: `uv run python bench/bench_pipelines.py`; writes bench/results/pipelines.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from loopstack.core.processes import ProcessSpec, Supervisor, free_port
from loopstack.core.settings import Settings
from loopstack.pipelines.context import StepContext
from loopstack.pipelines.loader import load_pipeline
from loopstack.pipelines.plan import expand
from loopstack.pipelines.runner import EmbeddedRunner
from loopstack.pipelines.tracking import step_run

PROJECT = Path(__file__).resolve().parents[1]
PARAMS = {"model": "bike-demand", "start": "2011-01-01", "end": "2011-04-01"}


def _mlflow(state: Path, port: int) -> ProcessSpec:
    python_bin = Path(__import__("sys").executable).parent
    return ProcessSpec(
        name="mlflow",
        argv=[
            str(python_bin / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{state}/mlflow.db",
            "--artifacts-destination",
            str(state / "artifacts"),
            "--serve-artifacts",
            "--workers",
            "1",
        ],
        health_url=f"http://127.0.0.1:{port}/health",
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )


def main() -> None:
    """Measure both ways and print the ratio."""
    from loopstack.features.store import apply

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        port = free_port()
        supervisor = Supervisor(state)
        running = supervisor.start(_mlflow(state, port))
        try:
            supervisor.wait_healthy(running, 180)
            settings = Settings(
                project_dir=PROJECT, state_dir=state, mlflow={"tracking_uri": f"http://127.0.0.1:{port}"},
                pipelines={"cache": False},
            )  # fmt: skip
            apply(settings)
            pipeline = load_pipeline(settings.pipelines_dir, "train")
            runner = EmbeddedRunner(settings)
            started = time.perf_counter()
            run = runner.run(pipeline, runner.prepare(pipeline, PARAMS))
            runner_s = time.perf_counter() - started
            steps_s = sum((t.finished_at or 0) - (t.started_at or 0) for t in run.tasks)

            prepared = runner.prepare(pipeline, PARAMS)
            started = time.perf_counter()
            for task in expand(pipeline, prepared.params):
                ctx = StepContext(
                    settings,
                    pipeline.name,
                    task.step.name,
                    Path(prepared.run_dir),
                    prepared.params,
                    task.branch,
                )
                with step_run(ctx):
                    task.step.fn(ctx)
            in_process_s = time.perf_counter() - started
        finally:
            supervisor.stop("mlflow")
    result = {
        "window": PARAMS,
        "tasks": len(run.tasks),
        "runner_wall_s": round(runner_s, 2),
        "sum_of_task_durations_s": round(steps_s, 2),
        "in_process_wall_s": round(in_process_s, 2),
        "runner_over_in_process": round(runner_s / in_process_s, 2),
        "note": "runner: fork server (imports paid once), parallelism 2; in-process: imports already paid",
    }
    out = PROJECT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipelines.json").write_text(json.dumps(result, indent=2))
    print(f"train pipeline ({len(run.tasks)} tasks, {PARAMS['start']}..{PARAMS['end']})")
    print(f"  embedded runner   {runner_s:7.1f} s")
    print(f"  one process       {in_process_s:7.1f} s")
    print(f"  ratio             {runner_s / in_process_s:7.2f}x")


if __name__ == "__main__":
    main()
