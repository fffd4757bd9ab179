"""The trigger policy: when a model is retrained, and why not when it is not.

A trigger (a drift or quality alert on the champion, the schedule, or a person) fires the train
pipeline on a recent window unless the model already has a retraining or a rollout in flight, or
(except for a person) the trigger's model time is within the model's cooldown of the last fired
trigger (on either side: a replay may rewind the model's clock, `loop/clock.py`). Fired or
suppressed, it is a decision with its evidence. The state row is locked while deciding, so the
API (manual retrains) and the controller never start two runs for one model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from loopstack.core.modelspec import ModelSpec
from loopstack.loop.decisions import DecisionRecorder, iso
from loopstack.loop.store import LoopStore, naive
from loopstack.pipelines.state import RunState

__all__ = ["TriggerPolicy", "TriggerRequest", "TriggerSource"]

TriggerSource = Literal["drift", "quality", "schedule", "manual"]


@dataclass(frozen=True)
class TriggerRequest:
    """Something asks for a retraining of `model` at model time `at`."""

    model: str
    source: TriggerSource
    at: datetime
    reason: str
    key: str
    """Identifies the request (the alert's event id, the schedule slot, a manual request id)."""
    evidence: dict[str, Any] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    """Extra pipeline parameters (manual requests only, e.g. the demo's `sabotage`)."""
    actor: str = "loop"


class TriggerPolicy:
    """Decides and starts retrainings."""

    def __init__(
        self,
        store: LoopStore,
        recorder: DecisionRecorder,
        spec_of: Callable[[str], ModelSpec],
        start_run: Callable[[dict[str, str]], RunState],
        labelled_until: Callable[[str, datetime], datetime | None],
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.spec_of = spec_of
        self.start_run = start_run
        self.labelled_until = labelled_until

    def request(self, req: TriggerRequest) -> dict[str, Any]:
        """Fire or suppress; return the decision (with `pipeline_run_id` when fired)."""
        spec = self.spec_of(req.model)
        at = naive(req.at)
        evidence = {**req.evidence, "trigger_source": req.source, "actor": req.actor}
        with self.store.engine.begin() as conn:
            state = self.store.state(conn, req.model)
            why_not = self._suppressed_because(spec, req, state, at)
            if why_not is not None:
                return self.recorder.record(
                    req.model, "trigger_suppressed", f"{req.reason}; suppressed: {why_not}", at,
                    req.key, evidence,
                )  # fmt: skip
            params = {**self._window(spec, at), "as_of": iso(at), **req.params, "model": req.model}
            run = self.start_run(params)
            self.store.save(conn, req.model, phase="training", run_id=run.run_id,
                            trigger_id=req.key, last_fired_at=at)  # fmt: skip
        evidence["params"] = params
        decision = self.recorder.record(
            req.model, "trigger_fired", req.reason, at, req.key, evidence,
            pipeline_run_id=run.run_id,
        )  # fmt: skip
        self.recorder.record(
            req.model, "pipeline_started", f"{run.pipeline} run {run.run_id} on "
            f"{params['start']} .. {params['end']}", at, run.run_id, {"params": params},
            pipeline_run_id=run.run_id,
        )  # fmt: skip
        return decision

    def _suppressed_because(
        self, spec: ModelSpec, req: TriggerRequest, state: dict[str, Any], at: datetime
    ) -> str | None:
        policy = spec.trigger
        if (req.source == "drift" and not policy.on_drift) or (
            req.source == "quality" and not policy.on_quality
        ):
            return f"trigger.on_{req.source} is off in the model spec"
        if state["phase"] == "training":
            return f"retraining run {state['run_id']} is in flight"
        if state["phase"] in ("shadow", "canary"):
            return f"challenger v{state['challenger']} is in rollout ({state['phase']})"
        last = state["last_fired_at"]
        if req.source != "manual" and last is not None:
            # Within the cooldown on either side: a replay that rewound the model's clock to
            # shortly before the last retraining is not due again, one far in the past is.
            cooldown = timedelta(seconds=policy.cooldown_s)
            if last - cooldown < at < last + cooldown:
                return (f"cooldown until {(last + cooldown).isoformat()} "
                        f"(last retraining {last.isoformat()})")  # fmt: skip
        return None

    def _window(self, spec: ModelSpec, at: datetime) -> dict[str, str]:
        """Train on the latest `training_window_days` whose outcomes the loop has seen."""
        labelled = self.labelled_until(spec.name, at)
        end = (min(labelled + timedelta(hours=1), at) if labelled else at).date()
        start = end - timedelta(days=spec.trigger.training_window_days)
        return {"start": start.isoformat(), "end": end.isoformat()}
