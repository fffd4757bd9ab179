"""The embedded backend: splits live in the state dir; the local inference server follows them."""

from __future__ import annotations

from loopstack.core.settings import Settings
from loopstack.serving.backends.base import Backend, Deployment
from loopstack.serving.traffic import TrafficSplit, TrafficStore

__all__ = ["EmbeddedBackend"]


class EmbeddedBackend(Backend):
    """Deploys by recording the split durably; running servers pick up its new revision."""

    name = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.store = TrafficStore(settings.state_path / "serving" / "traffic.db")

    def deploy(self, split: TrafficSplit) -> Deployment:
        """Record the split; the inference server applies it on its next refresh."""
        return Deployment(split=self.store.set(split), ready=True)

    def deployment(self, model: str) -> Deployment | None:
        """The model's recorded split."""
        split = self.store.get(model)
        return Deployment(split=split, ready=True) if split else None

    def deployments(self) -> list[Deployment]:
        """Every recorded split."""
        return [Deployment(split=s, ready=True) for s in self.store.all()]
