"""Scores closed windows on the detector server and reports each exactly once.

For each closed window, oldest first per version: fetch the version's detectors (once per
process: the bundle from MLflow, PUT into the detector server), score the window's rows, apply
the effect-size guard, then in ONE store transaction move the window `closed → reported` (a
conditional update: a window already reported is left alone), write the read table, delete the
window's rows and queue the `drift.v1` events to the publisher's durable outbox (with a
`review.v1` on the predictions topic for each row the outlier detector flagged, when the
model's `review.outliers` asks for it). A detector
server or registry that is down leaves the window closed: the version's windows are retried
with back-off (doubling from `backoff_min_s` to `backoff_max_s`). A window the server refuses
(4xx), or whose scoring fails `max_attempts` times in a row after reaching the server (an error
answer, the server dying mid-request) or on an error no retry can cure, is moved to `failed`
with its reason (`drift_failures`; the drift API and `loopstack drift` show it, and
`loopstack_drift_windows_total{status="failed"}` counts it) and never retried: a window that
kills the server cannot kill it forever. At most `bounds.max_window_rows` rows of a window are
read and sent, long and overflowing categories bounded (`bounds.py`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
import pandas as pd
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from loopstack.core.errors import is_transient
from loopstack.core.events import Event
from loopstack.core.events.topics import DRIFT, PREDICTIONS
from loopstack.core.logthrottle import LogThrottle
from loopstack.core.modelspec import DriftSpec, ReviewSpec
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift.bounds import Bounds, fold
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
from loopstack.monitoring.drift.tables import (
    drift_failures,
    drift_results,
    drift_rows,
    drift_windows,
)
from loopstack.monitoring.drift.verdict import FeatureVerdict, WindowVerdict, judge
from loopstack.monitoring.drift.windows import SpecLookup, utcnow
from loopstack.monitoring.drift_report import DriftReport
from loopstack.monitoring.errors import (
    DetectorNotFound,
    DetectorRequestFailed,
    DetectorRequestInvalid,
)

__all__ = ["DriftPublisher", "WindowReporter", "window_frame"]

_REASON_CHARS = 1_000

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


def window_frame(
    rows: Sequence[dict[str, Any]], info: BundleInfo, bounds: Bounds | None = None
) -> tuple[pd.DataFrame, int]:
    """The window as the detectors' table; rows missing a feature are dropped (and counted).

    The prediction column is kept only when every kept row has a numeric prediction. Long
    categories become digests and unseen ones past `bounds.max_categories` `<other>` (rows
    stored before the bounds existed included).
    """
    bounds = bounds or Bounds()
    kept = [rows[i] for i in kept_rows(rows, info)]
    frame = pd.DataFrame(
        {f: [r[f] for r in kept] for f in info.features}, columns=list(info.features)
    )
    for f in info.categorical:
        values = [bounds.value(v) for v in frame[f].astype(object).tolist()]
        folded = fold(values, info.categories.get(f), bounds.max_categories)
        frame[f] = pd.Series(folded, index=frame.index, dtype=object)
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
        bounds: Bounds | None = None,
        max_attempts: int = 3,
        backoff_min_s: float = 5.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self._store = store
        self.bounds = bounds or Bounds()
        self.max_attempts = max_attempts
        self._backoff_min_s, self._backoff_max_s = backoff_min_s, backoff_max_s
        # Version -> (monotonic time before which its windows wait, the last delay).
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}
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

        A version whose detectors or server are unavailable waits (with back-off); a window
        that fails deterministically is given up (see the module docstring).
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
            if time.monotonic() < self._backoff.get(version, (0.0, 0.0))[0]:
                blocked.add(version)
                continue
            try:
                done += self._report(head)
            except DetectorRequestInvalid as exc:  # refused: the same rows are refused again
                self._give_up(head, str(exc), attempts=1)
            except Exception as exc:
                counted = isinstance(exc, DetectorRequestFailed) or not is_transient(exc)
                if counted and self._attempt_failed(head, exc):
                    continue  # given up: the version's next window goes on
                self.gauges.score_failures.labels(*version).inc()
                self._back_off(version)
                # Retried after every batch: without the throttle, ~19 copies a second.
                self._waits.warning(
                    log,
                    "drift: window %d of %s v%s waits: %s: %s",
                    head["window_no"],
                    *version,
                    type(exc).__name__,
                    exc,
                )
                blocked.add(version)
            else:
                self._backoff.pop(version, None)
        return done

    def _back_off(self, version: tuple[str, str]) -> None:
        last = self._backoff.get(version, (0.0, 0.0))[1]
        delay = min(self._backoff_max_s, max(self._backoff_min_s, last * 2))
        self._backoff[version] = (time.monotonic() + delay, delay)

    def _attempt_failed(self, head: RowMapping, exc: Exception) -> bool:
        """Count a failed attempt at a window; give it up at `max_attempts` (True then)."""
        reason = f"{type(exc).__name__}: {exc}"
        f = drift_failures.c
        with self._store.engine.connect() as conn:
            before = conn.execute(select(f.attempts).where(*_failure_key(head))).scalar()
        attempts = 1 + int(before or 0)
        if attempts >= self.max_attempts:
            self._give_up(head, reason, attempts)
            return True
        with self._store.engine.begin() as conn:
            _record_failure(conn, head, attempts, reason, self._clock())
        return False

    def _give_up(self, head: RowMapping, reason: str, attempts: int) -> None:
        """Move a window to `failed` with its reason, in one transaction; it is not retried."""
        model, version, number = head["model"], head["version"], head["window_no"]
        log.error(
            "drift: window %d of %s v%s failed after %d attempt(s) and is not retried: %s",
            number,
            model,
            version,
            attempts,
            reason,
        )
        failure = (attempts, reason, self._clock())
        if self._finish(head, "failed", "failed", False, [], [], failure=failure):
            self.gauges.windows.labels(model, version, "failed").inc()

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
                    # Windows filled before the row cap existed may hold more: a fixed subset.
                    .limit(self.bounds.max_window_rows)
                )
            )
        wanted = (*found.info.features, PREDICTION)
        # Only the columns the detectors read are kept while decoding, one row at a time.
        rows = [
            {k: row[k] for k in wanted if k in row}
            for row in (orjson.loads(data) for _, data in stored)
        ]
        frame, dropped = window_frame(rows, found.info, self.bounds)
        if dropped:
            self.gauges.skipped.labels(model, "incomplete").inc(dropped)
        report: DriftReport | None = None
        verdict: WindowVerdict | None = None
        if len(frame) >= spec.min_window_size:
            report = self._score(found, frame)
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
        failure: tuple[int, str, datetime] | None = None,
    ) -> bool:
        """Mark the window, write its results (or its failure), drop its rows, queue its events:
        one transaction."""
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
            if failure is not None:
                _record_failure(conn, head, *failure)
            else:  # reported after failed attempts: they no longer matter
                conn.execute(delete(drift_failures).where(*_failure_key(head)))
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


def _failure_key(head: RowMapping) -> tuple[Any, ...]:
    f = drift_failures.c
    return (
        f.model == head["model"],
        f.version == head["version"],
        f.window_no == head["window_no"],
    )


def _record_failure(
    conn: Connection, head: RowMapping, attempts: int, reason: str, at: datetime
) -> None:
    """Upsert a window's failure row (a reason can be any length: it is cut)."""
    values = {"attempts": attempts, "reason": reason[:_REASON_CHARS], "failed_at": at}
    if conn.execute(update(drift_failures).where(*_failure_key(head)).values(**values)).rowcount:
        return
    conn.execute(
        insert(drift_failures).values(
            model=head["model"], version=head["version"], window_no=head["window_no"], **values
        )
    )


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
