"""The state of a pipeline run, kept as `state.json` in its run directory (read by the API)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["TaskRecord", "RunState", "TaskStatus", "RunStatus"]

TaskStatus = Literal["pending", "running", "cached", "succeeded", "failed", "skipped", "cancelled"]
RunStatus = Literal["running", "succeeded", "failed", "cancelled"]
STATE_FILE = "state.json"


class TaskRecord(BaseModel):
    """One task: what ran, where, how often, how it ended."""

    key: str
    step: str
    branch: str | None = None
    status: TaskStatus = "pending"
    attempts: int = 0
    pids: list[int] = Field(default_factory=list)
    argv: list[str] = Field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    log: str = ""
    error: str = ""


class RunState(BaseModel):
    """A pipeline run as the runner last saved it."""

    run_id: str
    pipeline: str
    params: dict[str, str]
    run_dir: str
    status: RunStatus = "running"
    started_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    error: str = ""
    runner_pid: int | None = None
    tasks: list[TaskRecord] = Field(default_factory=list)

    def save(self) -> None:
        """Write atomically, so readers never see half a file."""
        path = Path(self.run_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        """Read a run's state."""
        return cls.model_validate(json.loads((run_dir / STATE_FILE).read_text()))
