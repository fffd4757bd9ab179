"""`DeploymentService`: what answers for a model, and which version is its `champion`, as one.

Deploy, promote and rollback are one operation on serving: whoever moves `champion` (a person
through the API or CLI, or the loop's rollout controller) goes through here, so the alias and
the serving split never disagree. The new split is deployed first and the alias moved after; if
the alias cannot move, the previous split is deployed again. Each move is one `decision.v1`
(published by the registry) carrying the traffic it set.

A rollout (a challenger in shadow or canary) is its owner's until it ends: a champion move or
another challenger is refused with `RolloutInProgress` unless `force`, which withdraws the
challenger as a recorded `rolled_back` decision. The loop sees its rollout ended from the split.

Aliases (`champion`, `challenger`) are resolved to pinned versions here, at deploy time, and the
resolution is recorded in the deployment's detail; a running server never follows an alias.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from loopstack.core.errors import InvalidInput, NotFound
from loopstack.registry.registry import CHALLENGER, ModelRegistry
from loopstack.serving.backends.base import Backend, Deployment
from loopstack.serving.errors import RolloutInProgress
from loopstack.serving.traffic import TrafficSplit

__all__ = ["DeploymentService"]


class DeploymentService:
    """Resolves and validates versions, builds the traffic split, moves serving and aliases."""

    def __init__(self, registry: ModelRegistry, backend: Backend) -> None:
        self.registry = registry
        self.backend = backend

    def _pin(self, model: str, ref: str) -> str:
        return self.registry.version(model, ref).version

    def deploy(
        self,
        model: str,
        version: str,
        *,
        canary: int | None = None,
        shadow: bool = False,
        sticky: bool = False,
        force: bool = False,
        actor: str = "system",
        reason: str | None = None,
    ) -> Deployment:
        """Deploy `version` as the champion (a promote), or as a canary / shadow challenger.

        A challenger deploy of the rollout's own challenger steps that rollout (the loop's
        shadow → canary steps); any other deploy during a rollout needs `force`.

        Raises:
            NotFound: the model, version or alias is not registered.
            InvalidInput: canary and shadow together, a bad percentage, or no champion to test against.
            RolloutInProgress: a rollout is in flight and `force` is not set.
        """
        if canary is not None and shadow:
            raise InvalidInput("choose --canary PCT or --shadow, not both")
        if canary is not None and not 1 <= canary <= 100:
            raise InvalidInput(f"--canary must be a percentage from 1 to 100, got {canary}")
        pinned = self._pin(model, version)
        resolved = f"{version} -> v{pinned}" if version != pinned else f"v{pinned}"
        if canary is None and not shadow:
            return self.promote(
                model, pinned, reason or f"deployed v{pinned} as champion", actor=actor,
                force=force, detail=f"champion {resolved}",
            )  # fmt: skip
        mode = "shadow" if shadow else "canary"
        rollout = self._rollout(model)
        other = rollout if rollout is not None and rollout.challenger != pinned else None
        if other is not None and not force:
            raise self._refused(other, f"deploy v{pinned} as {mode} challenger")
        champion = self._current_champion(model)
        if champion == pinned:
            raise InvalidInput(
                f"v{pinned} is already the champion of {model!r}; test another version"
            )
        split = self._split(
            model=model,
            champion=champion,
            challenger=pinned,
            mode=mode,
            canary_percent=canary or 0,
            sticky=sticky,
        )
        detail = f"{mode} challenger {resolved} against champion v{champion}"
        if other is None:
            return self._deploy(split, detail)
        because = reason or f"{actor} deployed v{pinned} as {mode} challenger with force"
        return self._move(split, detail, lambda: self._end(other, because, actor, None))

    def promote(
        self,
        model: str,
        version: str | None,
        reason: str,
        *,
        actor: str = "system",
        force: bool = False,
        context: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> Deployment:
        """Make `version` (default: the challenger) the champion: it answers every request.

        With `force` during a rollout, the rollout ends: promoting its challenger concludes it
        (the loop's last canary step does this); any other version withdraws the challenger.

        Raises:
            NotFound: the version or the `challenger` alias does not exist.
            RolloutInProgress: a rollout is in flight and `force` is not set.
        """
        target = self._pin(model, version or CHALLENGER)
        rollout = self._rollout(model)
        if rollout is not None and not force:
            raise self._refused(rollout, f"promote v{target}")
        split = self._split(model=model, champion=target)
        decided = _with_traffic(context, split, rollout)

        def move() -> None:
            if rollout is not None and rollout.challenger != target:
                self._end(rollout, f"promotion of v{target} ended the rollout: {reason}", actor,
                          context)  # fmt: skip
            self.registry.promote(model, target, reason, actor, decided)

        return self._move(split, detail or f"champion v{target}", move)

    def rollback(
        self,
        model: str,
        reason: str,
        *,
        actor: str = "system",
        force: bool = False,
        context: dict[str, Any] | None = None,
    ) -> Deployment:
        """Restore the champion before the current one: it answers every request again.

        Raises:
            NotFound: the model has no champion.
            Conflict: no previous champion (`NoPreviousChampion`), or a rollout is in flight
                and `force` is not set (`RolloutInProgress`).
        """
        rollout = self._rollout(model)
        if rollout is not None and not force:
            raise self._refused(rollout, "roll back the champion")
        restored = self.registry.previous_champion(model)
        split = self._split(model=model, champion=restored)
        decided = _with_traffic(context, split, rollout)

        def move() -> None:
            if rollout is not None:
                self._end(rollout, f"rollback to v{restored} ended the rollout: {reason}", actor,
                          context)  # fmt: skip
            self.registry.rollback(model, reason, actor, decided)

        return self._move(split, f"champion v{restored} (rolled back)", move)

    def end_rollout(
        self,
        model: str,
        reason: str,
        *,
        actor: str = "system",
        context: dict[str, Any] | None = None,
    ) -> Deployment:
        """Withdraw the challenger in flight: the champion answers everything again.

        Raises:
            NotFound: the model has no rollout in flight.
        """
        rollout = self._rollout(model)
        if rollout is None:
            raise NotFound(f"model {model!r} has no challenger in shadow or canary to withdraw")
        split = self._split(model=model, champion=rollout.champion)
        decided = _with_traffic(context, split, rollout)
        decided["versions"]["challenger"] = rollout.challenger
        return self._move(
            split, f"champion v{rollout.champion} (v{rollout.challenger} withdrawn)",
            lambda: self._end(rollout, reason, actor, decided),
        )  # fmt: skip

    def rollout(self, model: str) -> TrafficSplit | None:
        """The model's split while a challenger is in shadow or canary, else None."""
        return self._rollout(model)

    # --- helpers -----------------------------------------------------------------------------
    def _rollout(self, model: str) -> TrafficSplit | None:
        current = self.backend.deployment(model)
        if current is None or current.split.challenger is None:
            return None
        return current.split

    @staticmethod
    def _refused(rollout: TrafficSplit, action: str) -> RolloutInProgress:
        return RolloutInProgress(
            rollout.model, rollout.champion, rollout.challenger or "", rollout.mode, action
        )

    def _end(
        self, rollout: TrafficSplit, reason: str, actor: str, context: dict[str, Any] | None
    ) -> None:
        """Record the withdrawal of the rollout's challenger (one `rolled_back` decision)."""
        ended = {"ended_rollout": _describe(rollout)}
        evidence = {**(context or {}).get("evidence", {}), **ended}
        self.registry.withdraw(rollout.model, rollout.challenger or "", reason, actor,
                               {**(context or {}), "evidence": evidence})  # fmt: skip

    def _move(self, split: TrafficSplit, detail: str, move: Callable[[], None]) -> Deployment:
        """Deploy `split`, then move the aliases; if they cannot move, serve the old split again."""
        previous = self.backend.deployment(split.model)
        deployment = self._deploy(split, detail)
        try:
            move()
        except Exception:
            if previous is not None:
                self.backend.deploy(previous.split)
            raise
        return deployment

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


def _describe(rollout: TrafficSplit) -> dict[str, Any]:
    return {"champion": rollout.champion, "challenger": rollout.challenger,
            "mode": rollout.mode, "canary_percent": rollout.canary_percent}  # fmt: skip


def _with_traffic(
    context: dict[str, Any] | None, split: TrafficSplit, rollout: TrafficSplit | None
) -> dict[str, Any]:
    """The decision's fields: the caller's, plus the traffic the move set (and what it ended)."""
    context = dict(context or {})
    evidence = {**context.pop("evidence", {}), "mode": "champion"}
    if rollout is not None:
        evidence["ended_rollout"] = _describe(rollout)
    return {**context, "evidence": evidence, "traffic": {split.champion: 100.0},
            "versions": {"champion": split.champion}}  # fmt: skip
