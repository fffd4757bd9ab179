"""The feedback consumer process: `python -m loopstack.monitoring.feedback.consumer`.

One member of the consumer group `feedback.group` on the topics `predictions` and `outcomes`.
Each batch is applied by the `FeedbackProjector` through the event backbone's `ConsumerRunner`
(exactly once: the read-model writes and the processed marks commit together), then the windows
it closed or shifted get their metrics once it is caught up (`windows.refresh`, idempotent;
during a backlog on the housekeeping timer). Between
batches, every `feedback.sweep_interval_s`, it dead-letters expired orphans (only when caught up:
a batch came back short), evaluates closed
windows (gauges, `quality.v1` alerts), pushes fresh lag features and writes the recorded
training labels to the offline store (`labels.py`). It serves its Prometheus
metrics on `127.0.0.1:<feedback.metrics_port>/metrics` and stops on SIGTERM.

Nothing one event or window holds stops it: a poison event is dead-lettered by the runner (the
projector refuses outcomes that cannot label their prediction, `errors.PoisonOutcome`), a window
whose metrics fail is recorded as failed (`windows.refresh`), and a transient error of the log or
the read model is waited out with back-off (`core.backoff`); only an error a retry cannot cure
outside any event stops it, saying so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry

from loopstack.core.backoff import run_with_backoff
from loopstack.core.events import (
    BatchResult,
    ConsumerProcess,
    ConsumerRunner,
    EventLog,
    EventMetrics,
)
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.logthrottle import LogThrottle
from loopstack.core.processes import stop_on_signals
from loopstack.core.settings import Settings, load_settings
from loopstack.monitoring.feedback.alerts import QualityAlerter, QualityPublisher
from loopstack.monitoring.feedback.baselines import Baselines, registry_classes
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.gauges import QualityGauges, ReviewGauges
from loopstack.monitoring.feedback.labels import LabelExporter
from loopstack.monitoring.feedback.orphans import sweep_orphans
from loopstack.monitoring.feedback.projector import FeedbackProjector, utcnow
from loopstack.monitoring.feedback.push import LagPusher
from loopstack.monitoring.feedback.review_queries import review_summary
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.windows import refresh, window_failure_counts

__all__ = ["FeedbackConsumer", "catalog_for", "main"]

log = logging.getLogger(__name__)

TOPICS = (PREDICTIONS, OUTCOMES)


def catalog_for(settings: Settings) -> ModelCatalog:
    """The model catalog of these settings (specs under `models/`)."""
    return ModelCatalog(
        settings.models_dir,
        extra_metrics=settings.feedback.alert_metrics,
        default_join_window_s=settings.feedback.default_join_window_s,
        recorded_classes=registry_classes(settings.mlflow_tracking_uri),
    )


class FeedbackConsumer(ConsumerProcess):
    """The projector on a consumer runner, plus the housekeeping between batches."""

    def __init__(
        self,
        settings: Settings,
        log_: EventLog,
        read_model: ReadModel,
        *,
        catalog: ModelCatalog | None = None,
        publisher: QualityPublisher | None = None,
        baselines: Baselines | None = None,
        pusher: LagPusher | None = None,
        labels: LabelExporter | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.log = log_
        self.read_model = read_model
        self.catalog = catalog or catalog_for(settings)
        self.clock = clock
        fb = settings.feedback
        self.metrics = EventMetrics(registry)
        self.projector = FeedbackProjector(
            self.catalog,
            entity_tolerance_s=fb.entity_time_tolerance_s,
            push_models=set(fb.push_sources) if pusher is not None else set(),
            clock=clock,
            max_outcome_abs=fb.max_outcome_abs,
        )
        self.runner = ConsumerRunner.from_settings(
            settings.events,
            log_,
            read_model.store,
            group=fb.group,
            topics=TOPICS,
            handler=self.projector,
            metrics=self.metrics,
        )
        self.alerter = QualityAlerter(
            read_model,
            self.catalog,
            baselines or (lambda _m, _v: {}),
            publisher,
            QualityGauges(self.metrics.registry),
        )
        self.review_gauges = ReviewGauges(self.metrics.registry)
        self.pusher = pusher
        self.labels = labels
        self._next_housekeeping = 0.0
        self._throttle = LogThrottle()

    def run(self, stop: threading.Event, poll_timeout: float = 0.5) -> None:
        """Process batches until `stop` is set; back off and go on while the event log or the
        read model fails transiently (the failed batch is read again); stop on an error a retry
        cannot cure, saying so."""
        run_with_backoff(
            lambda: self.run_once(poll_timeout),
            stop,
            name="feedback consumer",
            logger=log,
            throttle=self._throttle,
        )

    def run_once(self, timeout: float = 0.5) -> BatchResult:
        """Process one batch; do the housekeeping when it is due."""
        result = self.runner.run_once(timeout)
        caught_up = result.records < self.runner.batch_size
        if caught_up:
            # While a backlog drains, windows are refreshed on the housekeeping timer instead:
            # out-of-order outcomes would otherwise recompute the same windows every batch.
            # The batch is committed: a failing refresh is retried by the housekeeping.
            self._step("windows", lambda: refresh(self.read_model.engine, self.catalog))
        if time.monotonic() >= self._next_housekeeping:
            # Orphans only once caught up (a short batch): after downtime, the predictions an
            # outcome waits for may still be in the backlog, past the outcome's deadline.
            self.housekeeping(sweep=caught_up)
        return result

    def housekeeping(self, sweep: bool = True) -> dict[str, int]:
        """Dead-letter orphans (if `sweep`), evaluate closed windows, push lag features, write
        training labels offline (each independently: one failing leaves the others running and
        is retried next time)."""
        self._next_housekeeping = time.monotonic() + self.settings.feedback.sweep_interval_s
        done = {
            "orphans": 0,
            "windows": 0,
            "failed": 0,
            "alerts": 0,
            "reviews": 0,
            "pushed": 0,
            "labels": 0,
        }
        steps: list[tuple[str, Callable[[], int]]] = []
        if sweep:
            steps.append(
                (
                    "orphans",
                    lambda: sweep_orphans(
                        self.read_model,
                        self.log,
                        self.settings.feedback.group,
                        self.clock(),
                        metrics=self.metrics,
                    ),
                )
            )
        steps.append(("windows", lambda: refresh(self.read_model.engine, self.catalog)))
        steps.append(
            (
                "failed",
                lambda: self.alerter.gauges.set_failed(
                    window_failure_counts(self.read_model.engine)
                ),
            )
        )
        steps.append(("alerts", lambda: len(self.alerter.evaluate())))
        steps.append(
            ("reviews", lambda: self.review_gauges.set(review_summary(self.read_model.engine)))
        )
        if self.pusher is not None:
            steps.append(("pushed", self.pusher.drain))
        if self.labels is not None:
            steps.append(("labels", self.labels.drain))
        for name, step in steps:
            done[name] = self._step(name, step)
        return done

    def _step(self, name: str, step: Callable[[], int]) -> int:
        """Run one housekeeping step; a failure is logged (identical ones at most every 30 s)
        and retried at the next sweep: housekeeping never stops the consumer."""
        try:
            return step()
        except Exception as exc:
            self._throttle.log(
                log,
                logging.ERROR,
                "feedback: %s step failed (%s: %s); retrying in %.0fs",
                name,
                type(exc).__name__,
                exc,
                self.settings.feedback.sweep_interval_s,
            )
            return 0


def main() -> None:
    """Run the feedback consumer until SIGTERM or SIGINT."""
    from prometheus_client import start_http_server

    from loopstack.core.events import Publisher, open_event_log
    from loopstack.features.store import open_store
    from loopstack.monitoring.feedback.baselines import registry_baselines

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    registry = CollectorRegistry()
    event_log = open_event_log(settings)
    read_model = ReadModel.from_settings(settings)
    publisher = Publisher.open(settings, event_log, "feedback", EventMetrics(CollectorRegistry()))
    catalog = catalog_for(settings)
    pusher = (
        LagPusher(
            read_model,
            settings.feedback.push_sources,
            lambda: open_store(settings),
            catalog=catalog,
        )
        if settings.feedback.push_sources
        else None
    )
    labels = LabelExporter(read_model, catalog, lambda: open_store(settings))
    consumer = FeedbackConsumer(
        settings,
        event_log,
        read_model,
        publisher=publisher,
        baselines=registry_baselines(settings.mlflow_tracking_uri),
        catalog=catalog,
        pusher=pusher,
        labels=labels,
        registry=registry,
    )
    start_http_server(settings.feedback.metrics_port, addr=settings.host, registry=registry)
    stop = stop_on_signals()
    log.info("feedback consumer: group %s on %s", settings.feedback.group, ", ".join(TOPICS))
    try:
        consumer.run(stop)
    finally:
        consumer.close()
        publisher.close(timeout=10)
        read_model.close()
        event_log.close()


if __name__ == "__main__":
    main()
