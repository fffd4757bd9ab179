"""The backend interface: deploy a model version with a traffic split and read what is deployed."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict

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
    def deployment(self, model: str) -> Deployment | None:
        """The model's current deployment, or None if it was never deployed."""

    @abstractmethod
    def deployments(self) -> list[Deployment]:
        """Every deployed model."""
