"""Bench: the train pipeline's wall time through the embedded runner, against calling the same
step functions one after another in one process (same data, same stack, cache off).

Run: `uv run python bench/bench_pipelines.py`; it starts its own embedded stack (`loopstack up`
on free loopback ports, a temporary state dir) and writes bench/results/pipelines.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loopstack.core.processes import free_port
from loopstack.core.settings import Settings
from loopstack.pipelines.context import StepContext
from loopstack.pipelines.loader import load_pipeline
from loopstack.pipelines.plan import expand
from loopstack.pipelines.runner import EmbeddedRunner
from loopstack.pipelines.tracking import step_run

PROJECT = Path(__file__).resolve().parents[1]
PARAMS = {"model": "bike-demand", "start": "2011-01-01", "end": "2011-03-01", "labels": "all"}
PORTS = ("API__PORT", "MLFLOW__PORT", "SERVING__REST_PORT", "SERVING__GRPC_PORT",
         "DRIFT__DETECTOR_PORT", "DRIFT__METRICS_PORT", "FEEDBACK__METRICS_PORT",
         "LOOP__METRICS_PORT")  # fmt: skip


def _loopstack(env: dict[str, str], *args: str) -> None:
    cli = str(Path(sys.executable).parent / "loopstack")
    subprocess.run([cli, *args], env=env, check=True, capture_output=True, cwd=PROJECT)


def main() -> None:
    """Measure both ways and print the ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LOOPSTACK_PROJECT_DIR": str(PROJECT), "LOOPSTACK_STATE_DIR": tmp}
        env.update({f"LOOPSTACK_{name}": str(free_port()) for name in PORTS})
        env["LOOPSTACK_LOOP__MODELS"] = "[]"  # the bench registers versions: the loop stays out
        _loopstack(env, "up")
        try:
            os.environ.update({k: v for k, v in env.items() if k.startswith("LOOPSTACK_")})
            settings = Settings(pipelines={"cache": False})
            pipeline = load_pipeline(settings.pipelines_dir, "train")
            runner = EmbeddedRunner(settings)
            started = time.perf_counter()
            try:
                run = runner.run(pipeline, runner.prepare(pipeline, PARAMS))
            except Exception:
                for log in sorted(Path(tmp).glob("pipelines/runs/*/logs/register.log")):
                    print(log.read_text()[-3000:])
                raise
            runner_s = time.perf_counter() - started

            prepared = runner.prepare(pipeline, PARAMS)
            in_process_dir = Path(prepared.run_dir)
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
            # That run record names this process as its runner, still "running": `down` would
            # cancel it by signalling us.
            shutil.rmtree(in_process_dir, ignore_errors=True)
        finally:
            _loopstack(env, "down")
    steps = {t.key: round((t.finished_at or 0) - (t.started_at or 0), 2) for t in run.tasks}
    result = {
        "window": PARAMS,
        "tasks": len(run.tasks),
        "runner_wall_s": round(runner_s, 2),
        "in_process_wall_s": round(in_process_s, 2),
        "runner_over_in_process": round(runner_s / in_process_s, 2),
        "task_seconds": steps,
        "note": "runner: fork server (imports paid once per run), parallelism 2, each step its own "
        "process; in-process: the same step functions in this process, imports already paid",
    }
    out = PROJECT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipelines.json").write_text(json.dumps(result, indent=2))
    print(f"train pipeline, {len(run.tasks)} tasks, window {PARAMS['start']}..{PARAMS['end']}")
    print(f"  embedded runner   {runner_s:7.1f} s")
    print(f"  one process       {in_process_s:7.1f} s")
    print(f"  ratio             {runner_s / in_process_s:7.2f}x")


if __name__ == "__main__":
    main()
