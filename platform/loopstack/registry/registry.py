"""The model registry on MLflow: versions, aliases with history, promote and rollback.

Every alias move is a `decision.v1` event. The champion's history is a stack kept as a tag of
the registered model, so `rollback` restores the champion before the current one.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from loopstack.core import deadline
from loopstack.core.events.envelope import Event
from loopstack.core.events.topics import DECISIONS
from loopstack.registry.errors import (
    AliasNotSet,
    ModelNotRegistered,
    NoPreviousChampion,
    RegistryUnavailable,
    VersionNotFound,
)
from loopstack.registry.lineage import read_lineage
from loopstack.registry.timeouts import why_unanswered

__all__ = [
    "ModelRegistry",
    "VersionInfo",
    "ModelSummary",
    "DecisionPublisher",
    "CHAMPION",
    "CHALLENGER",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
_STACK_TAG = "loopstack.champion_stack"
_HISTORY_TAG = "loopstack.alias_history"
_HISTORY_LIMIT = 50


class DecisionPublisher(Protocol):
    """Where decision events go (the event backbone's `Publisher`)."""

    def publish(self, topic: str, events: Event) -> None:
        """Queue one event for the log."""


class VersionInfo(BaseModel):
    """One registered version, with its aliases and lineage."""

    model: str
    version: str
    run_id: str | None
    source: str
    created_at: float
    aliases: list[str]
    lineage: dict[str, Any]
    description: str = ""


class ModelSummary(BaseModel):
    """One registered model with its aliases."""

    model: str
    latest_version: str | None
    aliases: dict[str, str]


class ModelRegistry:
    """Read and move versions and aliases of registered models."""

    def __init__(
        self, tracking_uri: str, publisher: DecisionPublisher, source: str = "loopstack/registry"
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.publisher = publisher
        self.source = source

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # Each call is a step of the request's work: none starts past its deadline, so a
        # request answered "failed" is never applied afterwards.
        deadline.check(f"the MLflow call {getattr(fn, '__name__', 'to MLflow')}")
        try:
            return fn(*args, **kwargs)
        except RestException:
            raise
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
                raise
            raise RegistryUnavailable(self.tracking_uri, why_unanswered(exc)) from exc

    def _registered(self, model: str) -> Any:
        try:
            return self._call(self.client.get_registered_model, model)
        except MlflowException as exc:
            raise ModelNotRegistered(model) from exc

    def models(self) -> list[ModelSummary]:
        """Every registered model, by name."""
        found = self._call(self.client.search_registered_models, max_results=1000)
        return [
            ModelSummary(
                model=m.name,
                latest_version=max(
                    (v.version for v in m.latest_versions or []), key=int, default=None
                ),
                aliases=dict(m.aliases or {}),
            )
            for m in sorted(found, key=lambda m: m.name)
        ]

    def versions(self, model: str) -> list[VersionInfo]:
        """Every version of a model, newest first."""
        self._registered(model)
        found = self._call(self.client.search_model_versions, f"name='{model}'", max_results=1000)
        return sorted((_info(v) for v in found), key=lambda v: int(v.version), reverse=True)

    def version(self, model: str, ref: str) -> VersionInfo:
        """One version, by number or by alias (`champion`, `challenger`)."""
        self._registered(model)
        try:
            if ref.isdigit():
                found = self._call(self.client.get_model_version, model, ref)
            else:
                found = self._call(self.client.get_model_version_by_alias, model, ref)
        except MlflowException as exc:
            if ref.isdigit():
                raise VersionNotFound(model, ref) from exc
            raise AliasNotSet(model, ref) from exc
        return _info(found)

    def aliases(self, model: str) -> dict[str, str]:
        """Alias → version of a model."""
        return dict(self._registered(model).aliases or {})

    def alias_history(self, model: str) -> list[dict[str, Any]]:
        """Every alias move of a model, oldest first (the last 50)."""
        tags = self._registered(model).tags or {}
        return list(json.loads(tags.get(_HISTORY_TAG, "[]")))

    def set_alias(
        self,
        model: str,
        alias: str,
        version: str,
        reason: str,
        actor: str = "system",
        context: dict[str, Any] | None = None,
    ) -> None:
        """Point an alias at a version and record the move."""
        self.version(model, version)
        previous = self.aliases(model).get(alias)
        self._call(self.client.set_registered_model_alias, model, alias, version)
        self._record(model, alias, version, previous, reason, actor)
        self.decide(
            model, "alias_moved", version, reason, actor, {"previous": previous}, alias, context
        )

    def remove_alias(
        self,
        model: str,
        alias: str,
        reason: str,
        actor: str = "system",
        context: dict[str, Any] | None = None,
    ) -> None:
        """Remove an alias (e.g. `challenger` after a rollback) and record it."""
        previous = self.aliases(model).get(alias)
        if previous is None:
            return
        self._call(self.client.delete_registered_model_alias, model, alias)
        self._record(model, alias, None, previous, reason, actor)
        self.decide(
            model, "alias_moved", previous, reason, actor, {"removed": True}, alias, context
        )

    def promote(
        self,
        model: str,
        version: str | None,
        reason: str,
        actor: str = "system",
        context: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Make `version` (default: the challenger) the champion; push it on the champion stack."""
        target = self.version(model, version or CHALLENGER)
        aliases = self.aliases(model)
        previous = aliases.get(CHAMPION)
        if previous == target.version:
            return target
        self._call(self.client.set_registered_model_alias, model, CHAMPION, target.version)
        self._record(model, CHAMPION, target.version, previous, reason, actor)
        stack = self._stack(model)
        if previous is not None and (not stack or stack[-1] != previous):
            stack.append(previous)
        stack.append(target.version)
        self._save_stack(model, stack)
        if aliases.get(CHALLENGER) == target.version:
            self._call(self.client.delete_registered_model_alias, model, CHALLENGER)
            self._record(model, CHALLENGER, None, target.version, f"promoted: {reason}", actor)
        self.decide(
            model,
            "promoted",
            target.version,
            reason,
            actor,
            {"previous_champion": previous},
            alias=CHAMPION,
            context=context,
        )
        return self.version(model, target.version)

    def previous_champion(self, model: str) -> str:
        """The version `rollback` would restore.

        Raises:
            AliasNotSet: the model has no champion.
            NoPreviousChampion: the champion is the first one.
        """
        return self._previous(model)[1][-1]

    def _previous(self, model: str) -> tuple[str, list[str]]:
        """The current champion and the champion stack without it on top."""
        current = self.aliases(model).get(CHAMPION)
        if current is None:
            raise AliasNotSet(model, CHAMPION)
        stack = self._stack(model)
        while stack and stack[-1] == current:
            stack.pop()
        if not stack:
            raise NoPreviousChampion(model)
        return current, stack

    def rollback(
        self,
        model: str,
        reason: str,
        actor: str = "system",
        context: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Restore the champion before the current one."""
        current, stack = self._previous(model)
        restored = stack[-1]
        self._call(self.client.set_registered_model_alias, model, CHAMPION, restored)
        self._record(model, CHAMPION, restored, current, reason, actor)
        self._save_stack(model, stack)
        self.decide(
            model,
            "rolled_back",
            restored,
            reason,
            actor,
            {"rolled_back_version": current, "restored": restored},
            alias=CHAMPION,
            context=context,
        )
        return self.version(model, restored)

    def withdraw(
        self,
        model: str,
        version: str,
        reason: str,
        actor: str = "system",
        context: dict[str, Any] | None = None,
    ) -> None:
        """End the rollout of challenger `version` unpromoted, as one `rolled_back` decision.

        The `challenger` alias is removed if it still names `version`, so the loop does not
        start the same rollout again.
        """
        if self.aliases(model).get(CHALLENGER) == version:
            self._call(self.client.delete_registered_model_alias, model, CHALLENGER)
            self._record(model, CHALLENGER, None, version, f"withdrawn: {reason}", actor)
        self.decide(model, "rolled_back", version, reason, actor, {"withdrawn": version},
                     context=context)  # fmt: skip

    def _stack(self, model: str) -> list[str]:
        tags = self._registered(model).tags or {}
        return list(json.loads(tags.get(_STACK_TAG, "[]")))

    def _save_stack(self, model: str, stack: list[str]) -> None:
        self._call(
            self.client.set_registered_model_tag,
            model,
            _STACK_TAG,
            json.dumps(stack[-_HISTORY_LIMIT:]),
        )

    def _record(
        self,
        model: str,
        alias: str,
        version: str | None,
        previous: str | None,
        reason: str,
        actor: str,
    ) -> None:
        history = self.alias_history(model)
        history.append(
            {
                "alias": alias,
                "version": version,
                "previous": previous,
                "reason": reason,
                "actor": actor,
                "at": time.time(),
            }
        )
        self._call(
            self.client.set_registered_model_tag,
            model,
            _HISTORY_TAG,
            json.dumps(history[-_HISTORY_LIMIT:]),
        )

    def decide(
        self,
        model: str,
        kind: str,
        version: str,
        reason: str,
        actor: str,
        evidence: dict[str, Any],
        alias: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Publish a decision (one that moves no alias too, e.g. `gate_passed` of an adopted
        version); `context` adds the caller's fields (model time `at`, evidence)."""
        context = dict(context or {})
        extra = context.pop("evidence", {})
        data: dict[str, Any] = {"model": model, "kind": kind, "version": version, "reason": reason,
                                "evidence": {**evidence, **extra, "actor": actor}, **context}  # fmt: skip
        if alias is not None:
            data["alias"] = alias
        self.publisher.publish(
            DECISIONS, Event.create("decision.v1", data, source=self.source, subject=model)
        )


def _info(version: ModelVersion) -> VersionInfo:
    return VersionInfo(
        model=version.name,
        version=str(version.version),
        run_id=version.run_id,
        source=version.source,
        created_at=(version.creation_timestamp or 0) / 1000,
        aliases=list(version.aliases or []),
        lineage=read_lineage(dict(version.tags or {})),
        description=version.description or "",
    )
