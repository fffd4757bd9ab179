"""Turn a pipeline and its parameters into tasks: one per step, one per branch of a sweep."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from loopstack.core.settings import Settings
from loopstack.pipelines.dsl import Pipeline, Step
from loopstack.pipelines.errors import InvalidPipelineParams

__all__ = ["Task", "resolve_params", "expand", "check_window"]


@dataclass(frozen=True)
class Task:
    """One execution of a step (and branch)."""

    step: Step
    branch: str | None = None

    @property
    def key(self) -> str:
        """Display and log name, e.g. `train[2]`."""
        return self.step.name if self.branch is None else f"{self.step.name}[{self.branch}]"


def resolve_params(pipeline: Pipeline, given: dict[str, str], settings: Settings) -> dict[str, str]:
    """Check the given parameters, apply defaults, then the pipeline's own resolution."""
    unknown = sorted(set(given) - set(pipeline.param_names))
    if unknown:
        raise InvalidPipelineParams(
            f"pipeline {pipeline.name!r} has no parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(pipeline.param_names)}"
        )
    params: dict[str, str] = {}
    for param in pipeline.params:
        value = given.get(param.name, param.default)
        if value is None:
            raise InvalidPipelineParams(
                f"pipeline {pipeline.name!r} needs parameter {param.name!r} ({param.help})"
            )
        params[param.name] = value
    return pipeline.resolve(settings, params) if pipeline.resolve else params


def expand(pipeline: Pipeline, params: dict[str, str]) -> list[Task]:
    """Every task of a run, in definition order."""
    tasks: list[Task] = []
    for step in pipeline.steps:
        if step.sweep is None:
            tasks.append(Task(step))
            continue
        try:
            items = json.loads(params[step.sweep])
        except ValueError:
            items = None
        if not isinstance(items, list) or not items:
            raise InvalidPipelineParams(
                f"parameter {step.sweep!r} must be a non-empty JSON list, got {params[step.sweep]!r}"
            )
        tasks.extend(Task(step, str(item)) for item in items)
    return tasks


def check_window(start: str, end: str) -> None:
    """Refuse a window whose bounds are not ISO dates or that is empty or inverted."""
    try:
        first, last = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
    except ValueError as exc:
        raise InvalidPipelineParams(
            f"--from/--to must be ISO dates like 2011-01-01: {exc}"
        ) from exc
    if first >= last:
        raise InvalidPipelineParams(f"empty or inverted window: {first} is not before {last}")
