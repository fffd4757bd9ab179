"""The embedded runner: a pipeline's DAG on one machine, each step a child process.

Not an orchestrator: no scheduling, queues or clusters (Argo's job). It runs steps in
dependency order with bounded parallelism, retries with back-off, a step cache, per-step logs,
and stops every child on Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from loopstack.core.errors import LoopstackError
from loopstack.core.processes import child_environ, stop_group
from loopstack.core.settings import Settings
from loopstack.pipelines.cache import StepCache
from loopstack.pipelines.dsl import Pipeline
from loopstack.pipelines.errors import PERMANENT_FAILURE_EXIT, StepFailed
from loopstack.pipelines.forkclient import ForkServer
from loopstack.pipelines.plan import Task, expand, resolve_params
from loopstack.pipelines.state import RunState, TaskRecord
from loopstack.pipelines.step import FAILURE_FILE
from loopstack.pipelines.tracking import ensure_parent_run, finish_parent_run
from loopstack.registry.timeouts import mlflow_client_env

__all__ = ["EmbeddedRunner", "new_run_id", "runs_dir"]

log = logging.getLogger(__name__)


def runs_dir(settings: Settings) -> Path:
    """Where run directories live."""
    return settings.state_path / "pipelines" / "runs"


def new_run_id(pipeline: str, params: dict[str, str]) -> str:
    """A readable, unique run id: pipeline, model, time, random suffix."""
    model = params.get("model", "")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return "-".join(p for p in (pipeline, model, stamp, secrets.token_hex(3)) if p)


class EmbeddedRunner:
    """Runs one pipeline at a time on this machine."""

    def __init__(
        self, settings: Settings, on_change: Callable[[RunState], None] | None = None
    ) -> None:
        self.settings = settings
        self.cache = StepCache(settings.state_path / "pipelines" / "cache")
        self.on_change = on_change
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._cancelled = threading.Event()
        self._fork: ForkServer | None = None

    def prepare(
        self, pipeline: Pipeline, given: dict[str, str], run_id: str | None = None
    ) -> RunState:
        """Validate parameters and create the run directory and its initial state."""
        params = resolve_params(pipeline, given, self.settings)
        run_id = run_id or new_run_id(pipeline.name, params)
        run_dir = runs_dir(self.settings) / run_id
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        state = RunState(run_id=run_id, pipeline=pipeline.name, params=params, run_dir=str(run_dir))
        state.tasks = [
            TaskRecord(key=t.key, step=t.step.name, branch=t.branch)
            for t in expand(pipeline, params)
        ]
        state.runner_pid = os.getpid()
        state.save()
        return state

    def run(self, pipeline: Pipeline, state: RunState) -> RunState:
        """Run every task of a prepared run; raise StepFailed if a step kept failing.

        Any other Loopstack error (MLflow not answering, say) fails the run with its message
        as the run's error, so `pipeline run` and `GET /v1/pipelines/runs/{id}` show the cause.
        """
        try:
            return self._run(pipeline, state)
        except LoopstackError as exc:
            if state.status == "running" or not state.error:
                state.status, state.error = "failed", exc.message
                for task in state.tasks:
                    if task.status == "pending":  # never started: the run ended before them
                        task.status = "skipped"
                state.finished_at = state.finished_at or time.time()
                self._changed(state)
            raise

    def _run(self, pipeline: Pipeline, state: RunState) -> RunState:
        run_dir = Path(state.run_dir)
        tasks = {t.key: t for t in expand(pipeline, state.params)}
        # The fork server preloads while this process talks to MLflow: both take seconds.
        fork = self._spawn_fork_server()
        try:
            ensure_parent_run(
                self.settings.mlflow_tracking_uri, pipeline.name, run_dir, state.params
            )
        except BaseException:
            if fork is not None:
                fork.stop()
            raise
        records = {r.key: r for r in state.tasks}
        futures: dict[Future[None], str] = {}
        failure: StepFailed | None = None
        crash: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=self.settings.pipelines.parallelism)
        try:
            self._await_fork_server(fork)
            while True:
                self._skip_after_failures(pipeline, tasks, records)
                for key in self._ready(pipeline, tasks, records, futures):
                    records[key].status = "running"
                    futures[
                        pool.submit(self._execute, pipeline, tasks[key], records[key], state)
                    ] = key
                self._changed(state)
                if not futures:
                    break
                done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    futures.pop(future)
                    error = future.exception()
                    if isinstance(error, StepFailed):
                        failure = failure or error
                    elif error is not None:
                        crash = error
                        raise error
        except KeyboardInterrupt:
            self.cancel()
            for record in records.values():
                if record.status in ("pending", "running"):
                    record.status = "cancelled"
            state.status, state.error = "cancelled", "interrupted"
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if self._fork is not None:
                self._fork.stop()
                self._fork = None
            if state.status == "running":
                state.status = "failed" if failure or crash else "succeeded"
                state.error = failure.message if failure else _told(crash)
            state.finished_at = time.time()
            self._changed(state)
            durations = {
                f"duration_s.{r.key.replace('[', '.').rstrip(']')}": (r.finished_at or 0)
                - (r.started_at or 0)
                for r in records.values()
                if r.started_at
            }
            try:
                finish_parent_run(
                    self.settings.mlflow_tracking_uri, run_dir, state.status == "succeeded",
                    durations,
                )  # fmt: skip
            except LoopstackError as exc:  # the run's outcome stands; its MLflow record lags
                log.warning("could not record the run's end in MLflow: %s", exc.message)
        if failure:
            raise failure
        return state

    def cancel(self) -> None:
        """Stop every running child's process group."""
        self._cancelled.set()
        with self._lock:
            pids = list(self._running.values())
        for pid in pids:
            stop_group(pid, grace=3)

    def _ready(
        self,
        pipeline: Pipeline,
        tasks: dict[str, Task],
        records: dict[str, TaskRecord],
        futures: dict[Future[None], str],
    ) -> list[str]:
        done = {"succeeded", "cached"}
        ready = []
        for key, task in tasks.items():
            if records[key].status != "pending" or self._cancelled.is_set():
                continue
            deps = [r for r in records.values() if r.step in task.step.after]
            if all(d.status in done for d in deps):
                ready.append(key)
        return ready

    def _skip_after_failures(
        self, pipeline: Pipeline, tasks: dict[str, Task], records: dict[str, TaskRecord]
    ) -> None:
        bad = {"failed", "skipped", "cancelled"}
        changed = True
        while changed:
            changed = False
            for key, task in tasks.items():
                if records[key].status == "pending" and any(
                    r.status in bad for r in records.values() if r.step in task.step.after
                ):
                    records[key].status = "skipped"
                    changed = True

    def _execute(self, pipeline: Pipeline, task: Task, record: TaskRecord, state: RunState) -> None:
        run_dir = Path(state.run_dir)
        out_dir = run_dir / "steps" / task.step.name
        if task.branch is not None:
            out_dir = out_dir / f"branch-{task.branch}"
        inputs = self._input_dirs(pipeline, task, run_dir)
        key = self.cache.key(task, state.params, inputs)
        use_cache = self.settings.pipelines.cache and task.step.cache
        record.started_at = time.time()
        if use_cache and self.cache.restore(key, out_dir):
            record.status, record.finished_at = "cached", time.time()
            return
        argv = [
            sys.executable,
            *pipeline.step_command(
                task.step, run_dir=str(run_dir), params=state.params, branch=task.branch
            ),
        ]
        record.argv = argv
        record.log = str(run_dir / "logs" / f"{task.key}.log")
        env = self._child_env()
        attempts = task.step.retries + 1
        for attempt in range(1, attempts + 1):
            if self._cancelled.is_set():
                record.status = "cancelled"
                return
            record.attempts = attempt
            code = self._run_child(task, record, argv, env)
            if code == 0:
                record.status, record.finished_at = "succeeded", time.time()
                if use_cache:
                    self.cache.store(key, out_dir)
                return
            if code == PERMANENT_FAILURE_EXIT:  # the step said a retry cannot cure it
                break
            if attempt < attempts:
                time.sleep(self.settings.pipelines.retry_backoff_s * 2 ** (attempt - 1))
        record.status, record.finished_at = "failed", time.time()
        record.error = _failure_reason(out_dir, record.log)
        raise StepFailed(
            pipeline.name,
            task.key,
            record.attempts,
            record.log,
            record.error,
            permanent=code == PERMANENT_FAILURE_EXIT,
        )

    def _child_env(self) -> dict[str, str]:
        # One BLAS/OpenMP thread per step: parallel sweep branches would otherwise oversubscribe.
        return {
            "OMP_NUM_THREADS": "1",
            **child_environ(
                {
                    **self.settings.as_env(),
                    **mlflow_client_env(self.settings.mlflow, background=True),
                }
            ),
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn_fork_server(self) -> ForkServer | None:
        if not self.settings.pipelines.fork_server:
            return None
        shared = self.settings.pipelines.fork_socket
        if shared and (attached := ForkServer.attach(Path(shared))) is not None:
            self._fork = attached  # warm already: the backend's process keeps it
            return None
        return ForkServer(self._child_env(), self.settings.project_dir)

    def _await_fork_server(self, fork: ForkServer | None) -> None:
        if fork is None:
            return
        if fork.wait_ready():
            self._fork = fork
        else:  # fall back to plain child processes: slower, same behaviour
            log.warning("the fork server did not start; each step imports its libraries itself")
            fork.stop()

    def _on_pid(self, task: Task, record: TaskRecord, pid: int) -> None:
        with self._lock:
            self._running[task.key] = pid
            record.pids.append(pid)

    def _run_child(
        self, task: Task, record: TaskRecord, argv: list[str], env: dict[str, str]
    ) -> int:
        with open(record.log, "ab") as out:
            out.write(f"--- attempt {record.attempts}: {' '.join(argv)}\n".encode())
            out.flush()
        if self._fork is not None and task.step.runtime == "main":
            try:
                return self._fork.run(
                    argv,
                    env,
                    self.settings.project_dir,
                    record.log,
                    lambda pid: self._on_pid(task, record, pid),
                )
            except OSError:  # the shared fork server went away: plain processes from here on
                log.warning(
                    "the fork server stopped answering; running %s as a plain process", task.key
                )
                self._fork = None
            finally:
                with self._lock:
                    self._running.pop(task.key, None)
        with open(record.log, "ab") as out:
            child = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.settings.project_dir, start_new_session=True,
            )  # fmt: skip
            self._on_pid(task, record, child.pid)
            try:
                return child.wait()
            finally:
                with self._lock:
                    self._running.pop(task.key, None)

    def _input_dirs(self, pipeline: Pipeline, task: Task, run_dir: Path) -> list[Path]:
        """Output folders of every step this one depends on, directly or not."""
        seen: list[str] = []
        frontier = list(task.step.after)
        while frontier:
            name = frontier.pop()
            if name not in seen:
                seen.append(name)
                frontier.extend(pipeline.get(name).after)
        return [run_dir / "steps" / name for name in sorted(seen)]

    def _changed(self, state: RunState) -> None:
        with self._lock:
            state.save()
        if self.on_change:
            self.on_change(state)


def _told(error: BaseException | None) -> str:
    """A run's error from what crashed it, on one line."""
    if error is None:
        return ""
    if isinstance(error, LoopstackError):
        return error.message
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _failure_reason(out_dir: Path, log: str) -> str:
    """The step's own account of its failure (`failure.txt`), else the last line of its log
    that is not a traceback's source quote or `^^^^` marker, on one line."""
    try:
        return " ".join((out_dir / FAILURE_FILE).read_text(errors="replace").split())
    except OSError:
        pass
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    told = [line.strip() for line in lines if line.strip() and not line.startswith(" ")]
    told = [line for line in told if not line.startswith("---") and set(line) - set("^~ ")]
    return told[-1] if told else "no output (the step was killed: see its log)"
