"""`LoopService`: what the API offers of the loop (manual retrain, decision history, state)."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

from sqlalchemy import Engine

from loopstack.core.errors import Conflict
from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.loop.clock import ModelClocks
from loopstack.loop.decisions import DecisionRecorder, EventPublisher
from loopstack.loop.evidence import RolloutEvidence
from loopstack.loop.failures import ModelFailures
from loopstack.loop.history import DecisionHistory, OpsWindow, ops_metrics
from loopstack.loop.store import LoopStore
from loopstack.loop.trigger import TriggerPolicy, TriggerRequest
from loopstack.serving.backends.base import Backend

__all__ = ["LoopService", "RetrainSuppressed", "trigger_policy"]


class RetrainSuppressed(Conflict):
    """The policy suppressed a manual retraining (one is in flight or a rollout runs); wait for it."""


def trigger_policy(
    settings: Settings,
    store: LoopStore,
    recorder: DecisionRecorder,
    backend: Backend,
    evidence: RolloutEvidence,
) -> TriggerPolicy:
    """The trigger policy of these settings: train through the configured backend."""
    return TriggerPolicy(
        store,
        recorder,
        lambda model: load_model_spec(settings.models_dir, model),
        lambda params: backend.run_pipeline(settings.loop.pipeline, params),
        evidence.labelled_until,
    )


class LoopService:
    """Manual triggers and the decision history, over the loop's store."""

    def __init__(
        self,
        settings: Settings,
        publisher: EventPublisher,
        backend: Backend,
        feedback_engine: Engine,
    ) -> None:
        self.settings = settings
        self.store = LoopStore.from_settings(settings)
        self.evidence = RolloutEvidence(feedback_engine)
        self.policy = trigger_policy(
            settings,
            self.store,
            DecisionRecorder(publisher, "loopstack/api"),
            backend,
            self.evidence,
        )
        self.decisions = DecisionHistory(self.store.engine)
        self.clocks = ModelClocks(self.store.engine, self.decisions.latest_at)
        self.failures = ModelFailures(self.store.engine)

    def retrain(
        self, model: str, reason: str, params: dict[str, str], actor: str = "api"
    ) -> dict[str, Any]:
        """Ask for a retraining now (bypasses the cooldown, not the one-in-flight rule)."""
        load_model_spec(self.settings.models_dir, model)
        request = TriggerRequest(
            model=model,
            source="manual",
            at=self.clocks.now(model),
            reason=reason,
            key=f"manual:{uuid.uuid4()}",
            params=params,
            actor=actor,
        )
        decision = self.policy.request(request)
        if decision["kind"] == "trigger_suppressed":
            raise RetrainSuppressed(decision["reason"])
        return decision

    def history(self, model: str, limit: int = 1000) -> dict[str, Any]:
        """The model's decisions (oldest first), its model-ops metrics on its current timeline,
        its clock, its loop state and why the controller cannot advance it (None when it can)."""
        load_model_spec(self.settings.models_dir, model)
        rows = self.decisions.decisions(model, limit=limit)
        state = next((s for s in self.store.states() if s["model"] == model), None)
        timeline = self.clocks.timeline(model)
        return {
            "model": model,
            "decisions": rows,
            "metrics": ops_metrics(rows, OpsWindow.of(timeline)),
            "model_time": timeline.now.replace(tzinfo=UTC).isoformat(),
            "failure": self.failures.current().get(model),
            "state": {
                k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in state.items()
            }
            if state
            else None,
        }

    def failing(self) -> dict[str, dict[str, Any]]:
        """Models the loop controller cannot advance: reason, since (for `GET /v1/models`)."""
        return self.failures.current()

    def close(self) -> None:
        """Dispose of the store."""
        self.store.close()
