"""Scores closed windows on the detector server and reports each exactly once.

For each closed window, oldest first per version: fetch the version's detectors (once per
process: the bundle from MLflow, PUT into the detector server), score the window's rows, apply
the effect-size guard, then in ONE store transaction move the window `closed → reported` (a
conditional update: a window already reported is left alone), write the read table, delete the
window's rows and queue the `drift.v1` events to the publisher's durable outbox (with a
`review.v1` on the predictions topic for each row the outlier detector flagged, when the
model's `review.outliers` asks for it). A detector
server or registry that is down leaves the window closed: it is retried on the next pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
import pandas as pd
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from loopstack.core.errors import Unavailable
from loopstack.core.events import Event
from loopstack.core.events.topics import DRIFT, PREDICTIONS
from loopstack.core.logthrottle import LogThrottle
from loopstack.core.modelspec import DriftSpec, ReviewSpec
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift.bundles import (
    BundleInfo,
    BundleSource,
    detector_key,
    read_bundle_info,
)
from loopstack.monitoring.drift.events import (
    WindowFacts,
    drift_events,
    outliers_drifted,
    review_events,
)
from loopstack.monitoring.drift.gauges import DriftGauges
from loopstack.monitoring.drift.rows import PREDICTION
from loopstack.monitoring.drift.store import DriftStore
from loopstack.monitoring.drift.tables import drift_results, drift_rows, drift_windows
from loopstack.monitoring.drift.verdict import FeatureVerdict, WindowVerdict, judge
from loopstack.monitoring.drift.windows import SpecLookup, utcnow
from loopstack.monitoring.drift_report import DriftReport
from loopstack.monitoring.errors import DetectorNotFound, DetectorRequestInvalid

__all__ = ["DriftPublisher", "WindowReporter", "window_frame"]

log = logging.getLogger(__name__)


class DriftPublisher(Protocol):
    """Where reports go: the event backbone's `Publisher` (durable outbox)."""

    def publish(self, topic: str, events: Sequence[Event]) -> None:
        """Queue events for the log."""


@dataclass
class _Detectors:
    key: str
    info: BundleInfo
    bundle: bytes


def _usable(value: Any, categorical: bool) -> bool:
    if value is None:
        return False
    if categorical:
        return isinstance(value, str | int | bool) or (
            isinstance(value, float) and value.is_integer()
        )
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def kept_rows(rows: Sequence[dict[str, Any]], info: BundleInfo) -> list[int]:
    """Indices of the rows that have every feature the detectors read."""
    return [
        i
        for i, r in enumerate(rows)
        if all(_usable(r.get(f), f in info.categorical) for f in info.features)
    ]


def window_frame(rows: Sequence[dict[str, Any]], info: BundleInfo) -> tuple[pd.DataFrame, int]:
    """The window as the detectors' table; rows missing a feature are dropped (and counted).

    The prediction column is kept only when every kept row has a numeric prediction.
    """
    kept = [rows[i] for i in kept_rows(rows, info)]
    frame = pd.DataFrame(
        {f: [r[f] for r in kept] for f in info.features}, columns=list(info.features)
    )
    for f in info.categorical:
        frame[f] = frame[f].astype(object)
    if (
        info.prediction is not None
        and kept
        and all(_usable(r.get(PREDICTION), False) for r in kept)
    ):
        frame[info.prediction] = [float(r[PREDICTION]) for r in kept]
    return frame, len(rows) - len(kept)


class WindowReporter:
    """Scores and reports closed windows (see the module docstring)."""

    def __init__(
        self,
        store: DriftStore,
        specs: SpecLookup,
        bundles: BundleSource,
        detectors: DetectorClient,
        gauges: DriftGauges,
        *,
        publisher: DriftPublisher | None = None,
        reviews: Callable[[str], ReviewSpec] | None = None,
        unwatched: set[tuple[str, str]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._specs = specs
        self._reviews = reviews
        self._bundles = bundles
        self._client = detectors
        self.gauges = gauges
        self._publisher = publisher
        self.unwatched = unwatched if unwatched is not None else set()
        self._clock = clock
        self._loaded: dict[tuple[str, str], _Detectors] = {}
        self._waits = LogThrottle()

    def report_pending(self, limit: int = 200) -> int:
        """Report up to `limit` closed windows, oldest first per version; return how many.

        A version whose detectors or server are unavailable waits for the next call.
        """
        w = drift_windows.c
        with self._store.engine.connect() as conn:
            heads = list(
                conn.execute(
                    select(drift_windows)
                    .where(w.state == "closed")
                    .order_by(w.model, w.version, w.window_no)
                    .limit(limit)
                ).mappings()
            )
        done, blocked = 0, set()
        for head in heads:
            version = (head["model"], head["version"])
            if version in blocked:
                continue
            try:
                done += self._report(head)
            except Unavailable as exc:
                self.gauges.score_failures.labels(*version).inc()
                # Retried after every batch: without the throttle, ~19 copies a second.
                self._waits.warning(
                    log, "drift: window %d of %s v%s waits: %s", head["window_no"], *version, exc
                )
                blocked.add(version)
        return done

    def _detectors(self, model: str, version: str) -> _Detectors | None:
        """The version's detectors, installed on the server; None if it has none."""
        if (model, version) in self._loaded:
            return self._loaded[(model, version)]
        bundle = self._bundles.fetch(model, version)
        if bundle is None:
            return None
        found = _Detectors(detector_key(model, version), read_bundle_info(bundle), bundle)
        self._client.load(found.key, bundle)
        self._loaded[(model, version)] = found
        return found

    def _score(self, found: _Detectors, frame: pd.DataFrame) -> DriftReport:
        try:
            return self._client.score(found.key, frame)
        except DetectorNotFound:  # the server lost its store (restarted elsewhere): reinstall
            self._client.load(found.key, found.bundle)
            return self._client.score(found.key, frame)

    def _report(self, head: RowMapping) -> int:
        model, version, number = head["model"], head["version"], head["window_no"]
        found = self._detectors(model, version)
        if found is None:
            self._unwatch(head)
            return 0
        spec = self._specs(model)
        r = drift_rows.c
        with self._store.engine.connect() as conn:
            stored = list(
                conn.execute(
                    select(r.event_id, r.data)
                    .where(r.model == model, r.version == version, r.window_no == number)
                    .order_by(r.event_id, r.row_no)
                )
            )
        rows = [orjson.loads(data) for _, data in stored]
        frame, dropped = window_frame(rows, found.info)
        if dropped:
            self.gauges.skipped.labels(model, "incomplete").inc(dropped)
        report: DriftReport | None = None
        verdict: WindowVerdict | None = None
        if len(frame) >= spec.min_window_size:
            try:
                report = self._score(found, frame)
            except DetectorRequestInvalid as exc:
                log.error("drift: window %d of %s v%s refused: %s", number, model, version, exc)
                self._finish(head, "failed", "invalid", False, [], [])
                return 0
            verdict = judge(report, spec, found.info.n_reference)
        facts = WindowFacts(
            model, version, number, head["start_time"], head["end_time"], len(frame)
        )
        events = drift_events(facts, spec, report, verdict)
        reviews: list[Event] = []
        if self._reviews is not None and self._reviews(model).outliers:
            ids = [stored[i][0] for i in kept_rows(rows, found.info)]
            reviews = review_events(facts, report, ids, self._clock())
        results = _result_rows(facts, spec, report, verdict, self._clock())
        status = "ok" if report is not None and report.status == "ok" else "not_enough_data"
        drifted = _detected(verdict)
        if self._finish(head, "reported", status, drifted, results, events, reviews):
            self._set_gauges(facts, status, verdict, report)
            return 1
        return 0

    def _finish(
        self,
        head: RowMapping,
        state: str,
        status: str,
        drifted: bool,
        results: list[dict[str, Any]],
        events: list[Event],
        reviews: Sequence[Event] = (),
    ) -> bool:
        """Mark the window, write its results, drop its rows, queue its events: one transaction."""
        key = (head["model"], head["version"], head["window_no"])
        w = drift_windows.c
        with self._store.engine.begin() as conn:
            moved = conn.execute(
                update(drift_windows)
                .where(w.model == key[0], w.version == key[1], w.window_no == key[2])
                .where(w.state == "closed")
                .values(state=state, status=status, drifted=drifted, reported_at=self._clock())
            ).rowcount
            if moved != 1:
                return False  # reported meanwhile (another member): nothing more to do
            if results:
                conn.execute(insert(drift_results), results)
            _delete_rows(conn, *key)
            if self._publisher is not None:
                # Queued before the commit: a crash in between re-sends the same event ids.
                if events:
                    self._publisher.publish(DRIFT, events)
                if reviews:
                    self._publisher.publish(PREDICTIONS, reviews)
        return True

    def _unwatch(self, head: RowMapping) -> None:
        model, version = head["model"], head["version"]
        if (model, version) not in self.unwatched:
            log.warning(
                "drift: %s v%s has no drift detectors (no `detectors/bundle.tar.gz` in its MLflow "
                "run: retrain it with the `train` pipeline); its predictions are not watched",
                model,
                version,
            )
            self.unwatched.add((model, version))
        self.gauges.no_detectors.labels(model, version).inc(head["size"])
        self._finish(head, "reported", "no_detectors", False, [], [])

    def _set_gauges(
        self,
        facts: WindowFacts,
        status: str,
        verdict: WindowVerdict | None,
        report: DriftReport | None,
    ) -> None:
        labels = (facts.model, facts.version)
        self.gauges.windows.labels(*labels, status).inc()
        if verdict is None or report is None:
            return
        entries = list(verdict.features) + ([verdict.prediction] if verdict.prediction else [])
        for entry in entries:
            if entry.p_value is not None:
                self.gauges.p_value.labels(*labels, entry.feature).set(entry.p_value)
        self.gauges.detected.labels(*labels).set(1 if _detected(verdict) else 0)
        if report.outliers is not None:
            self.gauges.outlier_fraction.labels(*labels).set(
                report.outliers.fraction_over_threshold
            )


def _detected(verdict: WindowVerdict | None) -> bool:
    if verdict is None:
        return False
    return verdict.drifted or bool(verdict.prediction and verdict.prediction.drifted)


def _delete_rows(conn: Connection, model: str, version: str, number: int) -> None:
    r = drift_rows.c
    conn.execute(
        delete(drift_rows).where(r.model == model, r.version == version, r.window_no == number)
    )


def _result_rows(
    facts: WindowFacts,
    spec: DriftSpec,
    report: DriftReport | None,
    verdict: WindowVerdict | None,
    now: datetime,
) -> list[dict[str, Any]]:
    base = {
        "model": facts.model,
        "version": facts.version,
        "window_no": facts.window_no,
        "window_start": facts.start,
        "window_end": facts.end,
        "sample_size": facts.sample_size,
        "reported_at": now,
    }
    if report is None or verdict is None or report.status != "ok":
        empty = {"test": None, "statistic": None, "effect": None, "p_value": None}
        return [
            {**base, **empty, "kind": "feature", "feature": "", "threshold": None,
             "significant": False, "drifted": False, "status": "not_enough_data"}
        ]  # fmt: skip

    def row(kind: str, v: FeatureVerdict) -> dict[str, Any]:
        return {
            **base,
            "kind": kind,
            "feature": v.feature,
            "test": v.test,
            "statistic": v.statistic,
            "effect": v.effect,
            "p_value": v.p_value,
            "threshold": v.threshold,
            "significant": v.significant,
            "drifted": v.drifted,
            "status": "ok",
        }

    out = [row("feature", v) for v in verdict.features]
    if verdict.prediction is not None:
        out.append(row("prediction", verdict.prediction))
    if report.outliers is not None:
        fraction = report.outliers.fraction_over_threshold
        out.append(
            {**base, "kind": "outlier", "feature": "outlier_fraction", "test": "iforest",
             "statistic": fraction, "effect": fraction, "p_value": None,
             "threshold": report.outliers.threshold, "significant": False,
             "drifted": outliers_drifted(fraction, spec), "status": "ok"}
        )  # fmt: skip
    return out
