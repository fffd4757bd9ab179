"""`DeploymentService`: what `loopstack deploy` and `loopstack traffic` do, behind the API.

Aliases (`champion`, `challenger`) are resolved to pinned versions here, at deploy time, and the
resolution is recorded in the deployment's detail; a running server never follows an alias.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import ValidationError

from loopstack.core.errors import InvalidInput, NotFound
from loopstack.serving.backends.base import Backend, Deployment
from loopstack.serving.traffic import TrafficSplit

__all__ = ["DeploymentService", "VersionResolver"]


class VersionResolver(Protocol):
    """What the service needs of `ModelRegistry`: a version by number or alias."""

    def version(self, model: str, ref: str) -> object:
        """The registered version (an object with `.version`); raise NotFound if absent."""


class DeploymentService:
    """Resolves and validates versions, builds the traffic split, calls `Backend.deploy`."""

    def __init__(self, registry: VersionResolver, backend: Backend) -> None:
        self.registry = registry
        self.backend = backend

    def _pin(self, model: str, ref: str) -> str:
        return str(self.registry.version(model, ref).version)  # type: ignore[attr-defined]

    def deploy(
        self,
        model: str,
        version: str,
        *,
        canary: int | None = None,
        shadow: bool = False,
        sticky: bool = False,
    ) -> Deployment:
        """Deploy `version` as the champion, or as a canary (`canary` %) / shadow challenger.

        Raises:
            NotFound: the model, version or alias is not registered.
            InvalidInput: canary and shadow together, a bad percentage, or no champion to test against.
        """
        if canary is not None and shadow:
            raise InvalidInput("choose --canary PCT or --shadow, not both")
        if canary is not None and not 1 <= canary <= 100:
            raise InvalidInput(f"--canary must be a percentage from 1 to 100, got {canary}")
        pinned = self._pin(model, version)
        resolved = f"{version} -> v{pinned}" if version != pinned else f"v{pinned}"
        if canary is None and not shadow:
            split = self._split(model=model, champion=pinned)
            return self._deploy(split, f"champion {resolved}")
        champion = self._current_champion(model)
        if champion == pinned:
            raise InvalidInput(
                f"v{pinned} is already the champion of {model!r}; test another version"
            )
        mode = "shadow" if shadow else "canary"
        split = self._split(
            model=model,
            champion=champion,
            challenger=pinned,
            mode=mode,
            canary_percent=canary or 0,
            sticky=sticky,
        )
        return self._deploy(split, f"{mode} challenger {resolved} against champion v{champion}")

    def _split(self, **fields: object) -> TrafficSplit:
        try:
            return TrafficSplit.model_validate(fields)
        except ValidationError as exc:
            raise InvalidInput(f"invalid traffic split: {exc.errors()[0]['msg']}") from None

    def _deploy(self, split: TrafficSplit, detail: str) -> Deployment:
        deployment = self.backend.deploy(split)
        note = f"{detail}; {deployment.detail}" if deployment.detail else detail
        return deployment.model_copy(update={"detail": note})

    def _current_champion(self, model: str) -> str:
        current = self.backend.deployment(model)
        if current is not None:
            return current.split.champion
        try:
            return self._pin(model, "champion")
        except NotFound:
            raise InvalidInput(
                f"{model!r} has no deployed or aliased champion to test a challenger against; "
                "deploy one first: `loopstack deploy MODEL --version V`"
            ) from None

    def traffic(self, model: str) -> Deployment:
        """The model's current split; NotFound if it was never deployed."""
        current = self.backend.deployment(model)
        if current is None:
            raise NotFound(f"model {model!r} was never deployed; deploy it with `loopstack deploy`")
        return current

    def deployments(self) -> list[Deployment]:
        """Every deployed model."""
        return self.backend.deployments()
