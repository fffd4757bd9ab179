"""The rollout controller: a new `challenger` goes shadow → canary steps → champion, or back.

Shadow: the challenger scores a mirror of every request; once the paired test reaches its
horizon (`stats.verdict`) it is promoted to the canary steps, or rolled back (worse, or not
better). Canary steps (`rollout.canary_steps`, e.g. 10 → 50 → 100%): each holds for
`rollout.step_min_samples` requests and is guarded by the challenger's error rate and p99
latency against the champion's. After the last step the alias `champion` moves and the
challenger takes all traffic. A rollback restores the champion's split and removes the
`challenger` alias; the champion's traffic is never touched by a failing challenger in shadow.
Both go through `DeploymentService` (alias and split as one operation, one decision), as a
person's promote does. A rollout a person ended (a forced deploy, promote or rollback) is seen
from the split on the next tick, and the model goes idle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loopstack.core.modelspec import ModelSpec
from loopstack.loop.decisions import DecisionRecorder, iso
from loopstack.loop.evidence import RolloutEvidence, RouteHealth
from loopstack.loop.stats import verdict
from loopstack.loop.store import LoopStore
from loopstack.pipelines.state import RunState
from loopstack.registry.registry import CHALLENGER, CHAMPION, ModelRegistry
from loopstack.serving.deployments import DeploymentService

__all__ = ["MIN_GUARD_REQUESTS", "RolloutController"]

log = logging.getLogger(__name__)

MIN_GUARD_REQUESTS = 20
"""Requests a guard needs before it judges error rate or latency."""


class RolloutController:
    """Moves each model's loop one step per tick: pipeline finished, rollout started/advanced."""

    def __init__(
        self,
        store: LoopStore,
        recorder: DecisionRecorder,
        registry: ModelRegistry,
        deployments: DeploymentService,
        evidence: RolloutEvidence,
        spec_of: Callable[[str], ModelSpec],
        run_state: Callable[[str], RunState],
        clock: Callable[[str], datetime],
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.registry = registry
        self.deployments = deployments
        self.evidence = evidence
        self.spec_of = spec_of
        self.run_state = run_state
        self.clock = clock

    def tick(self, model: str) -> str:
        """Advance the model's loop if something is due; return its phase afterwards."""
        spec = self.spec_of(model)
        now = self.clock(model)
        with self.store.engine.begin() as conn:
            state = self.store.state(conn, model)
            if state["phase"] == "training":
                state = self._training(conn, state, now)
            if state["phase"] in ("shadow", "canary"):
                state = self._ended_elsewhere(conn, state)
            if state["phase"] == "idle":
                state = self._start(conn, state, now)
            elif state["phase"] == "shadow":
                state = self._shadow(conn, spec, state, now)
            elif state["phase"] == "canary":
                state = self._canary(conn, spec, state, now)
            return str(state["phase"])

    # --- phases -----------------------------------------------------------------------------
    def _save(self, conn: Connection, state: dict[str, Any], **values: Any) -> dict[str, Any]:
        self.store.save(conn, state["model"], **values)
        return {**state, **values}

    def _training(self, conn: Connection, state: dict[str, Any], now: datetime) -> dict[str, Any]:
        run = self.run_state(state["run_id"])
        if run.status == "running":
            return state
        failed = [t.key for t in run.tasks if t.status == "failed"]
        reason = f"{run.pipeline} run {run.run_id} {run.status}"
        if failed:
            reason += f" at {', '.join(failed)}: {run.error or 'see the step logs'}"
        seconds = (run.finished_at or run.started_at) - run.started_at
        self.recorder.record(
            state["model"], "pipeline_finished", reason, now, run.run_id,
            {"status": run.status, "seconds": round(seconds, 1), "error": run.error or None},
            pipeline_run_id=run.run_id,
        )  # fmt: skip
        return self._save(conn, state, phase="idle", run_id=None)

    def _ended_elsewhere(self, conn: Connection, state: dict[str, Any]) -> dict[str, Any]:
        """Idle again if the rollout's challenger no longer serves (a forced deploy, promote or
        rollback ended it, recorded as its own decision); else the state as it is."""
        model = state["model"]
        deployed = self.deployments.backend.deployment(model)
        if deployed is not None and deployed.split.challenger == state["challenger"]:
            return state
        champion = deployed.split.champion if deployed is not None else state["champion"]
        log.info("loop: the rollout of %s v%s was ended outside the loop; champion v%s",
                 model, state["challenger"], champion)  # fmt: skip
        return self._save(conn, state, phase="idle", step=0, challenger=None, champion=champion)

    def _start(self, conn: Connection, state: dict[str, Any], now: datetime) -> dict[str, Any]:
        model = state["model"]
        aliases = self.registry.aliases(model)
        challenger = aliases.get(CHALLENGER)
        if challenger is None:
            return state
        deployed = self.deployments.backend.deployment(model)
        if deployed is not None and deployed.split.challenger not in (None, challenger):
            return state  # someone else's rollout is in flight: theirs to finish or end
        champion = deployed.split.champion if deployed else aliases.get(CHAMPION)
        if champion is None:
            reason = f"v{challenger} is the first version: no champion to test it against"
            self.deployments.promote(model, challenger, reason, actor="loop",
                                     context={"at": iso(now)})  # fmt: skip
            # The cooldown runs from the first deployment too: no retraining right after it.
            return self._save(conn, state, last_fired_at=now)
        if champion == challenger:
            return state
        reason = f"challenger v{challenger} shadows champion v{champion}"
        self._traffic(model, now, champion, challenger, "shadow", 0, f"{challenger}:shadow", reason)
        return self._save(conn, state, phase="shadow", champion=champion, challenger=challenger,
                          step=0, phase_started_at=now)  # fmt: skip

    def _shadow(
        self, conn: Connection, spec: ModelSpec, state: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        model, champion, challenger = state["model"], state["champion"], state["challenger"]
        rollout = spec.rollout
        health = self.evidence.health(model, challenger, "shadow", state["phase_started_at"])
        broken = self._error_guard(health, rollout.max_error_rate, "shadow")
        if broken:
            return self._rollback(conn, state, now, broken, {"shadow": _health(health)})
        pairs = self.evidence.pairs(model, spec.task, champion, challenger)
        decision = verdict(pairs.champion, pairs.challenger, rollout.alpha, rollout.power,
                           rollout.effect_size)  # fmt: skip
        evidence = {"test": "one-sided paired t-test on per-request " +
                    ("squared error" if spec.task == "regression" else "Brier score"),
                    "alpha": rollout.alpha, "power": rollout.power,
                    "effect_size": rollout.effect_size, "horizon": decision.horizon,
                    **decision.evidence.as_dict(), "shadow": _health(health)}  # fmt: skip
        if decision.action == "wait":
            return state
        if decision.action == "rollback":
            return self._rollback(conn, state, now, decision.reason, evidence)
        percent = rollout.canary_steps[0]
        self._traffic(model, now, champion, challenger, "canary", percent,
                      f"{challenger}:canary:0", f"{decision.reason}: canary {percent}%", evidence)  # fmt: skip
        return self._save(conn, state, phase="canary", step=0, phase_started_at=now)

    def _canary(
        self, conn: Connection, spec: ModelSpec, state: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        model, champion, challenger = state["model"], state["champion"], state["challenger"]
        rollout, step = spec.rollout, int(state["step"])
        since = state["phase_started_at"]
        canary = self.evidence.health(model, challenger, "canary", since, latency=True)
        served = self.evidence.health(model, champion, "champion", since, latency=True)
        evidence = {"canary": _health(canary), "champion": _health(served),
                    "percent": rollout.canary_steps[step]}  # fmt: skip
        broken = self._error_guard(canary, rollout.max_error_rate, "canary")
        if not broken and canary.requests >= MIN_GUARD_REQUESTS and canary.p99_latency_ms:
            reference = served.p99_latency_ms if served.requests >= MIN_GUARD_REQUESTS else None
            if reference and canary.p99_latency_ms > rollout.max_p99_latency_ratio * reference:
                broken = (f"canary p99 latency {canary.p99_latency_ms:.1f} ms > "
                          f"{rollout.max_p99_latency_ratio}x the champion's {reference:.1f} ms")  # fmt: skip
        if broken:
            return self._rollback(conn, state, now, broken, evidence)
        if canary.requests + served.requests < rollout.step_min_samples:
            return state
        percent = rollout.canary_steps[step]
        if percent >= 100:
            reason = (f"v{challenger} held {canary.requests} requests at 100% "
                      f"(errors {canary.error_rate:.1%}): promoted over v{champion}")  # fmt: skip
            # The rollout's own end: `force` concludes it by promoting its challenger.
            self.deployments.promote(model, challenger, reason, actor="loop", force=True,
                                     context={"at": iso(now), "evidence": evidence})  # fmt: skip
            return self._save(
                conn, state, phase="idle", step=0, challenger=None, champion=challenger
            )
        nxt = rollout.canary_steps[step + 1]
        reason = (f"canary {percent}% healthy on {canary.requests + served.requests} requests "
                  f"(errors {canary.error_rate:.1%}): canary {nxt}%")  # fmt: skip
        self._traffic(model, now, champion, challenger, "canary", nxt,
                      f"{challenger}:canary:{step + 1}", reason, evidence)  # fmt: skip
        return self._save(conn, state, step=step + 1, phase_started_at=now)

    # --- actions ----------------------------------------------------------------------------
    @staticmethod
    def _error_guard(health: RouteHealth, limit: float, route: str) -> str | None:
        if health.requests >= MIN_GUARD_REQUESTS and health.error_rate > limit:
            return (f"challenger failed {health.errors}/{health.requests} {route} requests "
                    f"({health.error_rate:.1%} > {limit:.1%})")  # fmt: skip
        return None

    def _rollback(
        self,
        conn: Connection,
        state: dict[str, Any],
        now: datetime,
        reason: str,
        evidence: dict[str, Any],
    ) -> dict[str, Any]:
        # One decision: the champion takes all traffic back and the challenger is withdrawn.
        self.deployments.end_rollout(state["model"], reason, actor="loop",
                                     context={"at": iso(now), "evidence": evidence})  # fmt: skip
        return self._save(conn, state, phase="idle", step=0, challenger=None)

    def _traffic(
        self,
        model: str,
        now: datetime,
        champion: str,
        challenger: str | None,
        mode: str,
        percent: int,
        key: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        if mode == "shadow":
            self.deployments.deploy(model, challenger or "", shadow=True)
            traffic = {champion: 100.0, challenger or "": 0.0}
        else:
            self.deployments.deploy(model, challenger or "", canary=percent)
            traffic = {champion: float(100 - percent), challenger or "": float(percent)}
        versions = {"champion": champion, **({"challenger": challenger} if challenger else {})}
        self.recorder.record(model, "traffic_changed", reason, now, key,
                             {**(evidence or {}), "mode": mode}, traffic=traffic, versions=versions)  # fmt: skip


def _health(health: RouteHealth) -> dict[str, Any]:
    return {"requests": health.requests, "errors": health.errors,
            "error_rate": health.error_rate, "p99_latency_ms": health.p99_latency_ms}  # fmt: skip
