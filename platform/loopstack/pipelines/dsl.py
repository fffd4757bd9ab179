"""Define a pipeline once: parameters, steps, the files they exchange, sweeps and retries.

The same definition is run by the embedded runner (each step a child process) and compiled by
hera into an Argo WorkflowTemplate; both derive each step's command from `step_command`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from loopstack.pipelines.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from loopstack.core.settings import Settings
    from loopstack.pipelines.context import StepContext

__all__ = ["Param", "Step", "Pipeline", "RUN_DIR_IN_CONTAINER"]

# In Argo every step mounts the workflow's shared volume here; the embedded runner passes the
# local run directory in the same argument.
RUN_DIR_IN_CONTAINER = "/loopstack/run"

StepFn = Callable[["StepContext"], None]


@dataclass(frozen=True)
class Param:
    """A pipeline parameter (always a string on the command line and in Argo)."""

    name: str
    default: str | None = None
    help: str = ""


@dataclass(frozen=True)
class Step:
    """One step: a function of a `StepContext`, run in its own process/container."""

    name: str
    fn: StepFn
    after: tuple[str, ...] = ()
    sweep: str | None = None
    """Name of a JSON-list parameter; the step runs once per item, in parallel branches."""
    retries: int = 2
    runtime: Literal["main", "drift"] = "main"
    """Which environment runs the step: the main one or the drift runtime (its own image)."""
    cache: bool = True
    """Reuse outputs when code and inputs are unchanged; off for steps with outside effects."""


@dataclass
class Pipeline:
    """A DAG of steps with parameters."""

    name: str
    description: str = ""
    params: list[Param] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    resolve: Callable[[Settings, dict[str, str]], dict[str, str]] | None = None
    """Fill derived parameters (e.g. the sweep's branches) before a run is submitted."""

    def step(
        self,
        name: str,
        *,
        after: tuple[str, ...] = (),
        sweep: str | None = None,
        retries: int = 2,
        runtime: Literal["main", "drift"] = "main",
        cache: bool = True,
    ) -> Callable[[StepFn], StepFn]:
        """Register a function as a step of this pipeline."""

        def register(fn: StepFn) -> StepFn:
            if any(s.name == name for s in self.steps):
                raise PipelineDefinitionError(f"pipeline {self.name!r} defines step {name!r} twice")
            for dep in after:
                if not any(s.name == dep for s in self.steps):
                    raise PipelineDefinitionError(
                        f"step {name!r} runs after {dep!r}, which is not defined before it"
                    )
            if sweep is not None and sweep not in self.param_names:
                raise PipelineDefinitionError(
                    f"step {name!r} sweeps over unknown parameter {sweep!r}"
                )
            self.steps.append(Step(name, fn, tuple(after), sweep, retries, runtime, cache))
            return fn

        return register

    @property
    def param_names(self) -> list[str]:
        """Names of the parameters, in order."""
        return [p.name for p in self.params]

    def get(self, step: str) -> Step:
        """A step by name."""
        for candidate in self.steps:
            if candidate.name == step:
                return candidate
        raise PipelineDefinitionError(f"pipeline {self.name!r} has no step {step!r}")

    def step_command(
        self, step: Step, *, run_dir: str, params: dict[str, str], branch: str | None
    ) -> list[str]:
        """Arguments after the interpreter for a step: one truth for the runner and for Argo."""
        argv = ["-m", "loopstack.pipelines.step", "--pipeline", self.name, "--step", step.name]
        argv += ["--run-dir", run_dir]
        for name in self.param_names:
            argv += ["--param", f"{name}={params[name]}"]
        if step.sweep is not None:
            argv += ["--branch", branch if branch is not None else ""]
        return argv
