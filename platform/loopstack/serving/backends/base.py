"""The backend interface: deploy model versions with a traffic split, run pipelines, read status."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict

from loopstack.pipelines.state import RunState
from loopstack.serving.traffic import TrafficSplit

__all__ = ["Backend", "Deployment"]


class Deployment(BaseModel):
    """What a backend reports about one deployed model."""

    model_config = ConfigDict(frozen=True)

    split: TrafficSplit
    ready: bool
    detail: str = ""


class Backend(ABC):
    """Where Loopstack runs things. Kubernetes specifics stay behind this interface."""

    name: str

    @abstractmethod
    def deploy(self, split: TrafficSplit) -> Deployment:
        """Make `split` the model's traffic split (deploying its versions as needed)."""

    @abstractmethod
    def deployments(self) -> list[Deployment]:
        """Every deployed model."""

    @abstractmethod
    def run_pipeline(self, pipeline: str, params: dict[str, str]) -> RunState:
        """Start a pipeline run and return at once with its initial state."""

    @abstractmethod
    def pipeline_runs(self, limit: int = 50) -> list[RunState]:
        """The most recent pipeline runs, newest first."""

    @abstractmethod
    def pipeline_run(self, run_id: str) -> RunState:
        """The current state of a pipeline run."""

    @abstractmethod
    def cancel_pipeline_run(self, run_id: str) -> RunState:
        """Stop a running pipeline run (every step's process or pod)."""

    def deployment(self, model: str) -> Deployment | None:
        """The model's current deployment, or None if it was never deployed."""
        return next((d for d in self.deployments() if d.split.model == model), None)
