"""Session-wide fixtures: one embedded stack (real MLflow + management API) for every test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopstack.core.processes import Supervisor, free_port, stop_group
from loopstack.core.settings import Settings, load_settings

PROJECT_DIR = Path(__file__).resolve().parents[1]
LOOPSTACK = str(Path(sys.executable).parent / "loopstack")


@dataclass(frozen=True)
class Stack:
    """A running embedded stack and the environment that points the CLI at it."""

    settings: Settings
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `loopstack ARGS` against this stack."""
        return run_cli(self.env, *args, timeout=timeout)


def stack_env(state_dir: Path) -> dict[str, str]:
    """Environment for a stack on free loopback ports with its own state dir."""
    return {
        **os.environ,
        "LOOPSTACK_PROJECT_DIR": str(PROJECT_DIR),
        "LOOPSTACK_STATE_DIR": str(state_dir),
        "LOOPSTACK_API__PORT": str(free_port()),
        "LOOPSTACK_MLFLOW__PORT": str(free_port()),
        "LOOPSTACK_SERVING__REST_PORT": str(free_port()),
        "LOOPSTACK_SERVING__GRPC_PORT": str(free_port()),
        "LOOPSTACK_DRIFT__DETECTOR_PORT": str(free_port()),
        "LOOPSTACK_DRIFT__METRICS_PORT": str(free_port()),
        "LOOPSTACK_FEEDBACK__METRICS_PORT": str(free_port()),
        "LOOPSTACK_LOOP__METRICS_PORT": str(free_port()),
        # The session stack's tests deploy and alias versions by hand; the loop's own test
        # (tests/loop) runs a stack of its own where the loop controls the model.
        "LOOPSTACK_LOOP__MODELS": "[]",
        "COLUMNS": "200",
    }


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `loopstack` console script."""
    return subprocess.run(
        [LOOPSTACK, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def settings_from(env: dict[str, str]) -> Settings:
    """The settings a CLI run with `env` would load."""
    keys = {k: v for k, v in env.items() if k.startswith("LOOPSTACK_")}
    saved = dict(os.environ)
    try:
        os.environ.update(keys)
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`loopstack up` once per session; `loopstack down` (and a kill of any leftover) at the end."""
    with running_stack(stack_env(tmp_path_factory.mktemp("stack") / ".loopstack")) as stack:
        yield stack


@contextmanager
def running_stack(env: dict[str, str]) -> Iterator[Stack]:
    """`loopstack up` with `env`; on exit `loopstack down` and a kill of any leftover."""
    up = run_cli(env, "up")
    settings = settings_from(env)
    try:
        assert up.returncode == 0, f"loopstack up failed:\n{up.stdout}\n{up.stderr}"
        yield Stack(settings, env)
    finally:
        run_cli(env, "down")
        # The supervisor first: it would start again what is stopped after it.
        leftovers = Supervisor(settings.state_path).recorded()
        for leftover in sorted(leftovers, key=lambda p: p.name != "supervisor"):
            stop_group(leftover.pid, grace=2)
