"""`LoopService`: what the API offers of the loop (manual retrain, decision history, state)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine

from loopstack.core.errors import Conflict
from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.loop.decisions import DecisionRecorder, EventPublisher
from loopstack.loop.evidence import RolloutEvidence
from loopstack.loop.history import DecisionHistory, ops_metrics
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

    def retrain(
        self, model: str, reason: str, params: dict[str, str], actor: str = "api"
    ) -> dict[str, Any]:
        """Ask for a retraining now (bypasses the cooldown, not the one-in-flight rule)."""
        load_model_spec(self.settings.models_dir, model)
        request = TriggerRequest(
            model=model,
            source="manual",
            at=self.evidence.now(model),
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
        """The model's decisions (oldest first), its model-ops metrics and its loop state."""
        load_model_spec(self.settings.models_dir, model)
        rows = self.decisions.decisions(model, limit=limit)
        state = next((s for s in self.store.states() if s["model"] == model), None)
        return {
            "model": model,
            "decisions": rows,
            "metrics": ops_metrics(rows),
            "state": {
                k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in state.items()
            }
            if state
            else None,
        }

    def close(self) -> None:
        """Dispose of the store."""
        self.store.close()
