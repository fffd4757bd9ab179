"""The demo's own stack: a fresh state directory, free loopback ports, replay settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from loopstack.core.errors import ConfigurationError
from loopstack.core.processes import child_environ, free_port
from loopstack.core.settings import Settings, load_settings

__all__ = ["DemoStack"]

_PORTS = (
    "API__PORT", "MLFLOW__PORT", "SERVING__REST_PORT", "SERVING__GRPC_PORT",
    "DRIFT__DETECTOR_PORT", "DRIFT__METRICS_PORT", "FEEDBACK__METRICS_PORT", "LOOP__METRICS_PORT",
)  # fmt: skip


class DemoStack:
    """`loopstack up` / `down` on a state directory of the demo's own, so a user's stack is untouched."""

    def __init__(
        self, project_dir: Path, state_dir: Path, extra: dict[str, str] | None = None
    ) -> None:
        self.project_dir = project_dir
        self.state_dir = state_dir
        self.env = {
            "LOOPSTACK_PROJECT_DIR": str(project_dir),
            "LOOPSTACK_STATE_DIR": str(state_dir),
            # The replay sends each request's simulated time; the loop follows it closely.
            "LOOPSTACK_SERVING__ACCEPT_REQUEST_TIME": "true",
            "LOOPSTACK_LOOP__TICK_S": "0.5",
            "LOOPSTACK_FEEDBACK__SWEEP_INTERVAL_S": "1",
            "LOOPSTACK_DRIFT__SWEEP_INTERVAL_S": "1",
            "LOOPSTACK_SERVING__ASYNC_INFERENCE": "false",  # the replay calls REST only
            **{f"LOOPSTACK_{name}": str(free_port()) for name in _PORTS},
            **(extra or {}),
        }

    def settings(self) -> Settings:
        """The settings the demo's stack runs with."""
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def _loopstack(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        program = Path(sys.executable).parent / "loopstack"
        return subprocess.run(
            [str(program), *args],
            env={**child_environ(), **self.env},
            cwd=self.project_dir,
            check=False,
        )

    def up(self) -> None:
        """Start from an empty state directory (stopping an earlier demo stack in it first)."""
        if self.state_dir.exists():
            self._loopstack("down")
            shutil.rmtree(self.state_dir)
        if self._loopstack("up").returncode != 0:
            raise ConfigurationError("the demo stack did not start; see the message above")

    def down(self) -> None:
        """Stop the demo's stack."""
        self._loopstack("down")
