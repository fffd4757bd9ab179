"""The drift consumer process: `python -m loopstack.monitoring.drift.consumer`.

One member of the consumer group `drift.group` on the topic `predictions`. Each batch goes
through the event backbone's `ConsumerRunner` (exactly once: a window's rows and state commit
with the processed event ids); then the windows that closed are scored on the detector server
and reported (`drift.v1`, the read table, `loopstack_drift_*` gauges), each once. Every
`drift.sweep_interval_s` it also closes idle windows and retries windows that wait for the
detector server or the registry (with back-off; a window the server fails on deterministically
is given up with its reason, see `reporter.py`). What a window holds is bounded whatever the
logged values (`bounds.py`). It serves `/metrics` on `<host>:<drift.metrics_port>` and
stops on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from loopstack.core.backoff import run_with_backoff
from loopstack.core.errors import NotFound
from loopstack.core.events import (
    BatchResult,
    ConsumerProcess,
    ConsumerRunner,
    EventLog,
    EventMetrics,
)
from loopstack.core.events.topics import PREDICTIONS
from loopstack.core.modelspec import DriftSpec, ReviewSpec, load_model_spec
from loopstack.core.processes import stop_on_signals
from loopstack.core.settings import Settings, load_settings
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift.bounds import Bounds
from loopstack.monitoring.drift.bundles import BundleSource, MlflowBundles
from loopstack.monitoring.drift.gauges import DriftGauges
from loopstack.monitoring.drift.reporter import DriftPublisher, WindowReporter
from loopstack.monitoring.drift.store import DriftStore
from loopstack.monitoring.drift.windows import WindowAssigner, close_idle, utcnow

__all__ = ["DriftConsumer", "SpecCatalog", "detector_url", "main"]

log = logging.getLogger(__name__)


def detector_url(settings: Settings) -> str:
    """`drift.detector_url`, or the embedded detector server's `http://{host}:{detector_port}`."""
    return settings.drift.detector_url or f"http://{settings.host}:{settings.drift.detector_port}"


class SpecCatalog:
    """Drift specs by model name, read once from `models/` (or given); defaults otherwise."""

    def __init__(
        self, models_dir: Path | None = None, specs: Mapping[str, DriftSpec] | None = None
    ) -> None:
        self._dir = models_dir
        self._cache: dict[str, DriftSpec] = dict(specs or {})
        self._reviews: dict[str, ReviewSpec] = {}

    def __call__(self, model: str) -> DriftSpec:
        """The drift spec of `model`."""
        if model not in self._cache:
            spec = DriftSpec()
            if self._dir is not None:
                try:
                    found = load_model_spec(self._dir, model)
                    spec = found.drift
                    self._reviews[model] = found.review
                except NotFound:
                    log.warning("drift: model %r has no spec; using the default drift spec", model)
            self._cache[model] = spec
        return self._cache[model]

    def review(self, model: str) -> ReviewSpec:
        """The review spec of `model` (the default one when it has no spec)."""
        self(model)
        return self._reviews.get(model, ReviewSpec())


class DriftConsumer(ConsumerProcess):
    """The window assigner on a consumer runner, plus the reporter between batches."""

    def __init__(
        self,
        settings: Settings,
        log_: EventLog,
        store: DriftStore,
        detectors: DetectorClient,
        bundles: BundleSource,
        *,
        specs: Callable[[str], DriftSpec] | None = None,
        publisher: DriftPublisher | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.specs = specs or SpecCatalog(settings.models_dir)
        self.clock = clock
        self.metrics = EventMetrics(registry)
        self.gauges = DriftGauges(self.metrics.registry)
        unwatched: set[tuple[str, str]] = set()
        bounds = Bounds.from_settings(settings.drift)
        self.assigner = WindowAssigner(
            self.specs, self.gauges, unwatched=unwatched, clock=clock, bounds=bounds
        )
        self.runner = ConsumerRunner.from_settings(
            settings.events,
            log_,
            store.store,
            group=settings.drift.group,
            topics=[PREDICTIONS],
            handler=self.assigner,
            metrics=self.metrics,
        )
        self.reporter = WindowReporter(
            store,
            self.specs,
            bundles,
            detectors,
            self.gauges,
            publisher=publisher,
            reviews=self.specs.review if isinstance(self.specs, SpecCatalog) else None,
            unwatched=unwatched,
            clock=clock,
            bounds=bounds,
            max_attempts=settings.drift.max_score_attempts,
            backoff_min_s=settings.drift.sweep_interval_s,
            backoff_max_s=settings.drift.retry_backoff_max_s,
        )
        self._next_sweep = 0.0

    def run_once(self, timeout: float = 0.5) -> BatchResult:
        """Process one batch, report the windows it closed; sweep when due."""
        result = self.runner.run_once(timeout)
        if result.applied:
            self._guarded("report", self.reporter.report_pending)
        if time.monotonic() >= self._next_sweep:
            self.sweep()
        return result

    def sweep(self) -> int:
        """Close idle windows and report what waits; return the windows reported."""
        self._next_sweep = time.monotonic() + self.settings.drift.sweep_interval_s
        self._guarded("close", lambda: close_idle(self.store.engine, self.specs, self.clock()))
        return self._guarded("report", self.reporter.report_pending)

    def run(self, stop: threading.Event, poll_timeout: float = 0.5) -> None:
        """Process batches until `stop` is set; back off and go on while the log is unavailable.

        A batch that fails is rewound by the runner and read again, so a transient error (a
        locked or read-only event log, a lost broker) costs only time. An error a retry cannot
        cure stops the consumer: retrying it would only spin.
        """
        run_with_backoff(
            lambda: self.run_once(poll_timeout), stop, name="drift consumer", logger=log
        )

    def _guarded(self, name: str, step: Callable[[], int]) -> int:
        try:
            return step()
        except Exception:  # reporting must not stop consuming; the windows persist, retried
            log.exception("drift: %s step failed; retrying on the next sweep", name)
            return 0


def main() -> None:
    """Run the drift consumer until SIGTERM or SIGINT."""
    from prometheus_client import start_http_server

    from loopstack.core.events import Publisher, open_event_log

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # MLflow retries a refused connection for minutes; a window can wait for the next sweep.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    settings = load_settings()
    registry = CollectorRegistry()
    event_log = open_event_log(settings)
    store = DriftStore.from_settings(settings)
    publisher = Publisher.open(settings, event_log, "drift", EventMetrics(CollectorRegistry()))
    client = DetectorClient(detector_url(settings))
    consumer = DriftConsumer(
        settings,
        event_log,
        store,
        client,
        MlflowBundles(settings.mlflow_tracking_uri),
        publisher=publisher,
        registry=registry,
    )
    start_http_server(settings.drift.metrics_port, addr=settings.host, registry=registry)
    stop = stop_on_signals()
    log.info("drift consumer: group %s on %s", settings.drift.group, PREDICTIONS)
    try:
        consumer.run(stop)
    finally:
        consumer.close()
        publisher.close(timeout=10)
        client.close()
        store.close()
        event_log.close()


if __name__ == "__main__":
    main()
