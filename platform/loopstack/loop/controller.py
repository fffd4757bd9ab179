"""The loop controller process: `python -m loopstack.loop.controller`.

One member of the consumer group `loop.group` on `predictions`, `drift`, `quality`, `decisions`
and `audit`. Each event is applied exactly once with the store: predictions move their model's
clock (`clock.ModelClocks`), decisions become history rows, champion drift and quality alerts
become pending triggers, decisions and management actions become audit records. Every
`loop.tick_s` it advances each model: a finished pipeline run, a new challenger to shadow, a
rollout's next step (`rollout.RolloutController`), pending and scheduled triggers
(`trigger.TriggerPolicy`). Each model is its own failure domain: a malformed spec or a failing
tick is logged, kept in `loop_failures` (`failures.ModelFailures`) and retried next tick, while
the other models keep being decided. A transient error of the event log or the store (a lock, a
lost connection) is waited out with back-off (`core.backoff`: 0.5 s doubling to 30 s, the
warning rate-limited); an error a retry cannot cure stops it, saying so. Serves `/metrics`; stops
on SIGTERM.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from loopstack.core.audit import apply_audit
from loopstack.core.backoff import run_with_backoff
from loopstack.core.errors import LoopstackError, NotFound
from loopstack.core.events import (
    BatchResult,
    ConsumerProcess,
    ConsumerRunner,
    EventLog,
    EventMetrics,
)
from loopstack.core.events.envelope import Event
from loopstack.core.events.topics import AUDIT, DECISIONS, DRIFT, PREDICTIONS, QUALITY
from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.core.processes import stop_on_signals
from loopstack.core.settings import Settings, load_settings
from loopstack.loop.clock import ModelClocks, latest_request_times
from loopstack.loop.decisions import DecisionRecorder, EventPublisher
from loopstack.loop.evidence import RolloutEvidence
from loopstack.loop.failures import ModelFailures
from loopstack.loop.history import DecisionHistory, OpsWindow, ops_metrics, record_decision
from loopstack.loop.metrics import LoopMetrics
from loopstack.loop.rollout import RolloutController
from loopstack.loop.schedule import CronSchedule
from loopstack.loop.service import trigger_policy
from loopstack.loop.store import LoopStore, naive
from loopstack.loop.tables import pending_triggers
from loopstack.loop.trigger import TriggerRequest
from loopstack.registry.registry import CHAMPION, ModelRegistry
from loopstack.serving.backends.base import Backend
from loopstack.serving.deployments import DeploymentService

__all__ = ["LoopController", "main"]

log = logging.getLogger(__name__)

TOPICS = (PREDICTIONS, DRIFT, QUALITY, DECISIONS, AUDIT)
OPS_REFRESH_S = 15.0


def _when(value: str) -> datetime:
    return naive(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _pending(event: Event) -> dict[str, Any] | None:
    """The trigger an alert asks for, or None (not an alert on a served model's health)."""
    data = event.data
    if event.name == "drift.v1":
        if not data["drifted"] or data["status"] != "ok" or data["kind"] == "outlier":
            return None
        features = [f for f in data.get("features", []) if f["drifted"]]
        detail = ", ".join(f"{f['feature']} (p={f['p_value']:.2g})" for f in features[:5])
        return {"source": "drift", "at": _when(data["window_end"]),
                "reason": f"{data['kind']} drift on v{data['version']}: {detail}",
                "evidence": {"version": data["version"], "drift_event_id": event.id,
                             "window_start": data["window_start"], "window_end": data["window_end"],
                             "sample_size": data["sample_size"], "features": features}}  # fmt: skip
    if event.name == "quality.v1":
        if data["state"] != "degraded" or data["route"] != "champion":
            return None
        return {"source": "quality", "at": _when(data["window"]["end"]),
                "reason": f"{data['metric']} of v{data['version']} degraded: {data['value']:.4g} "
                          f"vs baseline {data['baseline']:.4g}",
                "evidence": {"version": data["version"], "quality_event_id": event.id,
                             "metric": data["metric"], "value": data["value"],
                             "baseline": data["baseline"], "threshold": data.get("threshold"),
                             "window": data["window"]}}  # fmt: skip
    return None


class LoopController(ConsumerProcess):
    """The consumer (history rows, pending triggers) and the per-model ticks."""

    def __init__(
        self,
        settings: Settings,
        log_: EventLog,
        store: LoopStore,
        publisher: EventPublisher,
        backend: Backend,
        evidence: RolloutEvidence,
        metrics: LoopMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.evidence = evidence
        self.metrics = metrics or LoopMetrics()
        recorder = DecisionRecorder(publisher)
        registry = ModelRegistry(settings.mlflow_tracking_uri, publisher, source="loopstack/loop")
        self.registry = registry
        self.policy = trigger_policy(settings, store, recorder, backend, evidence)
        self.history = DecisionHistory(store.engine)
        self.clocks = ModelClocks(store.engine, self.history.latest_at)
        self.failures = ModelFailures(store.engine)
        self.rollout = RolloutController(
            store, recorder, registry, DeploymentService(registry, backend), evidence,
            self.spec, backend.pipeline_run, self.model_time,
        )  # fmt: skip
        self.runner = ConsumerRunner.from_settings(
            settings.events, log_, store.store, group=settings.loop.group, topics=TOPICS,
            batch_handler=self._apply_batch, metrics=EventMetrics(self.metrics.registry),
        )  # fmt: skip
        self._next_tick = 0.0
        self._next_ops = 0.0

    def model_time(self, model: str) -> datetime:
        """The model's clock: the event time of its own traffic (`clock.ModelClocks`)."""
        return self.clocks.now(model)

    def spec(self, model: str) -> ModelSpec:
        """The model's spec (read on every use: edits apply without a restart)."""
        return load_model_spec(self.settings.models_dir, model)

    def _apply_batch(self, events: Sequence[Event], conn: Connection) -> None:
        for model, latest in latest_request_times(events).items():
            if self.clocks.observe(conn, model, latest):
                log.info("loop: %s's traffic went back in time; its clock rewound to %s",
                         model, latest.isoformat())  # fmt: skip
        for event in events:
            if event.name != "prediction.v1":
                self._apply(event, conn)

    def _apply(self, event: Event, conn: Connection) -> None:
        if event.name in ("audit.v1", "decision.v1"):
            apply_audit(event, conn)
        if event.name == "decision.v1":
            record_decision(event, conn)
            self.metrics.decided(event.data)
            return
        pending = _pending(event)
        if pending is not None:
            conn.execute(insert(pending_triggers).values(
                event_id=event.id, model=event.data["model"], source=pending["source"],
                at=pending["at"], reason=pending["reason"],
                evidence=json.dumps(pending["evidence"], default=str),
            ))  # fmt: skip

    # --- ticks --------------------------------------------------------------------------------
    def tick(self) -> None:
        """Advance every model's loop once; a model whose spec does not load or whose tick
        fails is logged, kept as failing and retried next tick, the others go on."""
        self._next_tick = time.monotonic() + self.settings.loop.tick_s
        refresh_ops = time.monotonic() >= self._next_ops
        if refresh_ops:  # model-ops gauges read the whole history: not on every tick
            self._next_ops = time.monotonic() + OPS_REFRESH_S
        outcome = self.failures.advance(
            self.settings.models_dir, self.settings.loop.models,
            lambda spec: self._advance(spec, refresh_ops),
        )  # fmt: skip
        for model, reason in outcome.items():
            self.metrics.failing.labels(model).set(0 if reason is None else 1)

    def _advance(self, spec: ModelSpec, refresh_ops: bool) -> None:
        try:
            self.rollout.tick(spec.name)
            self._triggers(spec)
        except NotFound:
            return  # not registered yet: nothing to roll out or retrain against
        if refresh_ops:
            window = OpsWindow.of(self.clocks.timeline(spec.name))
            self.metrics.set_ops(spec.name, ops_metrics(self.history.decisions(spec.name), window))

    def _triggers(self, spec: ModelSpec) -> None:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(pending_triggers).where(pending_triggers.c.model == spec.name)
                .order_by(pending_triggers.c.at, pending_triggers.c.event_id)
            ).mappings().all()  # fmt: skip
        champion = self.registry.aliases(spec.name).get(CHAMPION) if rows else None
        timeline = self.clocks.timeline(spec.name) if rows else None
        for row in rows:
            evidence = json.loads(row["evidence"])
            if evidence.get("version") == champion and timeline is not None:
                self._request(TriggerRequest(
                    model=spec.name, source=row["source"], at=timeline.on(row["at"]),
                    reason=row["reason"], key=row["event_id"], evidence=evidence,
                ))  # fmt: skip
            with self.store.engine.begin() as conn:
                conn.execute(
                    delete(pending_triggers).where(pending_triggers.c.event_id == row["event_id"])
                )
        # At scale the schedule is the model's Argo CronWorkflow (charts/); here the loop keeps it.
        if spec.trigger.schedule and self.settings.backend == "embedded":
            self._schedule(spec)

    def _schedule(self, spec: ModelSpec) -> None:
        cron = CronSchedule.parse(spec.trigger.schedule or "")
        now = self.model_time(spec.name)
        with self.store.engine.begin() as conn:
            checked = self.store.state(conn, spec.name)["schedule_checked_at"]
            self.store.save(conn, spec.name, schedule_checked_at=now)
        due = cron.due(checked, now)
        if due is not None:
            self._request(TriggerRequest(
                model=spec.name, source="schedule", at=due, key=f"schedule:{due.isoformat()}",
                reason=f"scheduled retraining ({cron.expression}) due {due.isoformat()}",
                evidence={"schedule": cron.expression},
            ))  # fmt: skip

    def _request(self, request: TriggerRequest) -> None:
        try:
            self.policy.request(request)
        except LoopstackError as exc:  # the pipeline could not start: say so, do not retry forever
            log.error("loop: %s trigger of %s could not start %s: %s", request.source,
                      request.model, self.settings.loop.pipeline, exc.message)  # fmt: skip
            self.policy.recorder.record(
                request.model, "trigger_suppressed",
                f"{request.reason}; suppressed: the pipeline could not start: {exc.message}",
                request.at, request.key, {**request.evidence, "trigger_source": request.source},
            )  # fmt: skip

    # --- process ------------------------------------------------------------------------------
    def run(self, stop: threading.Event, poll_timeout: float = 0.5) -> None:
        """Apply batches and tick until `stop` is set, waiting out transient errors (a failed
        batch is read again; a failed tick runs again after the wait)."""
        run_with_backoff(
            lambda: self.run_once(poll_timeout), stop, name="loop controller", logger=log
        )

    def run_once(self, timeout: float = 0.5) -> BatchResult:
        """Apply one batch of events; tick when due."""
        result = self.runner.run_once(timeout)
        if time.monotonic() >= self._next_tick:
            self.tick()
        return result


def main() -> None:
    """Run the loop controller until SIGTERM or SIGINT."""
    from prometheus_client import CollectorRegistry, start_http_server

    from loopstack.core.events import Publisher, open_event_log
    from loopstack.monitoring.feedback.store import ReadModel
    from loopstack.registry.timeouts import use_mlflow_timeouts
    from loopstack.serving.backends import open_backend
    from loopstack.serving.backends.embedded import EmbeddedBackend

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    use_mlflow_timeouts(settings.mlflow, background=True)
    metrics = LoopMetrics(CollectorRegistry())
    event_log = open_event_log(settings)
    store = LoopStore.from_settings(settings)
    read_model = ReadModel.from_settings(settings)
    publisher = Publisher.open(settings, event_log, "loop", EventMetrics(CollectorRegistry()))
    backend = open_backend(settings)
    if isinstance(backend, EmbeddedBackend):
        backend.warm()  # retrainings then start without importing their libraries first
    controller = LoopController(settings, event_log, store, publisher, backend,
                                RolloutEvidence(read_model.engine), metrics)  # fmt: skip
    start_http_server(settings.loop.metrics_port, addr=settings.host, registry=metrics.registry)
    stop = stop_on_signals()
    log.info("loop controller: group %s on %s", settings.loop.group, ", ".join(TOPICS))
    try:
        controller.run(stop)
    finally:
        controller.close()
        publisher.close(timeout=10)
        read_model.close()
        store.close()
        event_log.close()
        if isinstance(backend, EmbeddedBackend):
            backend.close()


if __name__ == "__main__":
    main()
