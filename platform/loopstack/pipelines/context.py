"""What a step function receives: its parameters, its branch, and where its files go."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopstack.core.settings import Settings

__all__ = ["StepContext"]


@dataclass(frozen=True)
class StepContext:
    """A step's view of its run: files of its own and of the steps before it."""

    settings: Settings
    pipeline: str
    step: str
    run_dir: Path
    params: dict[str, str]
    branch: str | None = None

    @property
    def run_id(self) -> str:
        """The pipeline run's id (the run directory's name)."""
        return self.run_dir.name

    @property
    def out_dir(self) -> Path:
        """This step's (branch's) output folder; the runner caches it as a whole."""
        path = self.run_dir / "steps" / self.step
        if self.branch is not None:
            path = path / f"branch-{self.branch}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def output(self, name: str) -> Path:
        """Path of one of this step's output files."""
        return self.out_dir / name

    def input(self, step: str, name: str, branch: str | None = None) -> Path:
        """Path of a file an earlier step wrote."""
        folder = self.run_dir / "steps" / step
        return (folder / f"branch-{branch}" if branch is not None else folder) / name

    def branches(self, step: str) -> list[str]:
        """Branch names an earlier sweep step produced."""
        folder = self.run_dir / "steps" / step
        return sorted(
            (p.name.removeprefix("branch-") for p in folder.glob("branch-*")), key=_natural
        )

    def write_json(self, name: str, value: Any) -> Path:
        """Write a JSON output file."""
        path = self.output(name)
        path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
        return path

    def read_json(self, step: str, name: str, branch: str | None = None) -> Any:
        """Read a JSON file an earlier step wrote."""
        return json.loads(self.input(step, name, branch).read_text())


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)
