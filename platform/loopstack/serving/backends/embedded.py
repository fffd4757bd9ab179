"""The embedded backend: splits live in the state dir; pipelines run as local process groups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from loopstack.core.errors import NotFound
from loopstack.core.processes import child_environ, pid_alive
from loopstack.core.settings import Settings
from loopstack.pipelines.forkclient import ForkServer
from loopstack.pipelines.loader import load_pipeline
from loopstack.pipelines.runner import EmbeddedRunner, runs_dir
from loopstack.pipelines.state import RunState
from loopstack.serving.backends.base import Backend, Deployment
from loopstack.serving.traffic import TrafficSplit, TrafficStore

__all__ = ["EmbeddedBackend"]


class EmbeddedBackend(Backend):
    """Deploys by recording the split durably; running servers pick up its new revision."""

    name = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = TrafficStore(settings.state_path / "serving" / "traffic.db")
        self._fork: ForkServer | None = None
        self._fork_ready = threading.Event()

    def warm(self) -> str | None:
        """Keep a fork server for this process's runs (libraries imported once, not per run);
        its socket once it is ready, else None (it warms in the background meanwhile)."""
        if not self.settings.pipelines.fork_server:
            return None
        if self._fork is None or not self._fork.alive():
            fork = ForkServer(child_environ(self.settings.as_env()), self.settings.project_dir)
            ready = threading.Event()

            def wait() -> None:
                if fork.wait_ready():
                    ready.set()

            threading.Thread(target=wait, name="fork-warm", daemon=True).start()
            self._fork, self._fork_ready = fork, ready
            return None
        return str(self._fork.socket_path) if self._fork_ready.is_set() else None

    def close(self) -> None:
        """Stop the warm fork server (it also stops by itself when this process ends)."""
        if self._fork is not None:
            self._fork.stop()
            self._fork = None

    def deploy(self, split: TrafficSplit) -> Deployment:
        """Record the split; the inference server applies it on its next refresh."""
        return self._reported(self.store.set(split))

    def deployment(self, model: str) -> Deployment | None:
        """The model's recorded split."""
        split = self.store.get(model)
        return self._reported(split) if split else None

    def deployments(self) -> list[Deployment]:
        """Every recorded split."""
        return [self._reported(s) for s in self.store.all()]

    def _reported(self, split: TrafficSplit) -> Deployment:
        """The split, ready once the inference server reported its revision loaded in full."""
        state = self.store.load_state(split.model)
        if state is None or state.revision < split.revision:
            waiting = f"the inference server has not loaded revision {split.revision} yet"
            return Deployment(split=split, ready=False, detail=waiting)
        return Deployment(split=split, ready=not state.detail, detail=state.detail)

    def run_pipeline(self, pipeline: str, params: dict[str, str]) -> RunState:
        """Validate, prepare the run directory, and start the runner in its own process group."""
        definition = load_pipeline(self.settings.pipelines_dir, pipeline)
        state = EmbeddedRunner(self.settings).prepare(definition, params)
        log = Path(state.run_dir) / "logs" / "runner.log"
        with open(log, "ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "loopstack.pipelines.run", "--run-dir", state.run_dir],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_environ({**self.settings.as_env(), **self._fork_env()}),
                cwd=self.settings.project_dir,
                start_new_session=True,
            )
        state.runner_pid = child.pid
        state.save()
        return state

    def _fork_env(self) -> dict[str, str]:
        socket = self.warm()
        return {"LOOPSTACK_PIPELINES__FORK_SOCKET": socket} if socket else {}

    def pipeline_run(self, run_id: str) -> RunState:
        """The run's saved state; a run whose runner died without finishing is marked failed."""
        run_dir = runs_dir(self.settings) / run_id
        if not (run_dir / "state.json").is_file():
            raise NotFound(f"no pipeline run {run_id!r}; list runs with `loopstack pipeline runs`")
        state = RunState.load(run_dir)
        if state.status == "running" and state.runner_pid and not pid_alive(state.runner_pid):
            state.status, state.error = "failed", "the runner process ended without finishing"
        return state

    def pipeline_runs(self, limit: int = 50) -> list[RunState]:
        """The most recent runs, newest first."""
        folder = runs_dir(self.settings)
        dirs = sorted(folder.glob("*/state.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        return [self.pipeline_run(p.parent.name) for p in dirs[:limit]]

    def cancel_pipeline_run(self, run_id: str) -> RunState:
        """SIGTERM the runner; it stops every step's process group before it exits."""
        state = self.pipeline_run(run_id)
        if state.status == "running" and state.runner_pid and pid_alive(state.runner_pid):
            os.kill(state.runner_pid, signal.SIGTERM)
        return state
