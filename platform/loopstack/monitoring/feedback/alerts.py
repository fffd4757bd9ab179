"""Quality alerts: closed windows against the version's training baseline, with hysteresis.

For each alerted metric (the model's gate metric plus `feedback.alert_metrics`), a window is bad
when its value is worse than the training-time value by more than `quality.degradation_margin`
(relative, as the evaluation gate compares). `quality.consecutive_windows` bad windows in a row
turn the state `degraded` and publish `quality.v1` (degraded); as many good windows in a row
turn it back and publish `quality.v1` (recovered). Each window is evaluated once, in order.

The alert events get ids derived from what they say (model, version, route, metric, window,
state) and are queued to the publisher's durable outbox before the evaluation commits: a crash
in between publishes the same event id again, which consumers apply once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from loopstack.core.errors import Unavailable
from loopstack.core.events import Event
from loopstack.core.events.topics import QUALITY
from loopstack.monitoring.feedback.baselines import Baselines
from loopstack.monitoring.feedback.catalog import HIGHER_IS_BETTER, ModelCatalog
from loopstack.monitoring.feedback.gauges import QualityGauges
from loopstack.monitoring.feedback.records import to_iso
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.tables import alert_state, window_metrics, windows
from loopstack.pipelines.metrics import better

__all__ = ["QualityAlerter", "QualityPublisher"]

log = logging.getLogger(__name__)

_SOURCE = "loopstack/feedback"


class QualityPublisher(Protocol):
    """Where alerts go: the event backbone's `Publisher` (durable outbox)."""

    def publish(self, topic: str, events: Sequence[Event]) -> None:
        """Queue events for the log."""


def _event_id(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "loopstack:quality:" + ":".join(map(str, parts))))


class QualityAlerter:
    """Evaluates newly closed windows: sets gauges, moves alert states, publishes `quality.v1`."""

    def __init__(
        self,
        read_model: ReadModel,
        catalog: ModelCatalog,
        baselines: Baselines,
        publisher: QualityPublisher | None,
        gauges: QualityGauges | None = None,
    ) -> None:
        self._rm = read_model
        self._catalog = catalog
        self._baselines = baselines
        self._publisher = publisher
        self.gauges = gauges or QualityGauges()

    def evaluate(self, limit: int = 500) -> list[Event]:
        """Evaluate up to `limit` unevaluated windows, oldest first; return the alerts sent.

        Windows whose baseline cannot be read (registry unavailable) wait for the next call.
        """
        w = windows.c
        sent: list[Event] = []
        with self._rm.engine.begin() as conn:
            heads = list(
                conn.execute(
                    select(windows)
                    .where(w.evaluated.is_(False), w.dirty.is_(False))
                    .order_by(w.model, w.version, w.route, w.window_no)
                    .limit(limit)
                ).mappings()
            )
            blocked: set[tuple[str, str]] = set()
            for head in heads:
                if (head["model"], head["version"]) in blocked:
                    continue
                try:
                    sent.extend(self._evaluate(conn, head))
                except Unavailable as exc:
                    log.warning(
                        "feedback: baseline of %s v%s unavailable (%s); evaluating later",
                        head["model"],
                        head["version"],
                        exc,
                    )
                    blocked.add((head["model"], head["version"]))
            if sent and self._publisher is not None:
                self._publisher.publish(QUALITY, sent)
        return sent

    def _evaluate(self, conn: Connection, head: RowMapping) -> list[Event]:
        model, version, route, number = (
            head["model"],
            head["version"],
            head["route"],
            head["window_no"],
        )
        m = window_metrics.c
        values = [
            (seg, metric, value)
            for seg, metric, value in conn.execute(
                select(m.segment, m.metric, m.value).where(
                    m.model == model, m.version == version, m.route == route, m.window_no == number
                )
            )
        ]
        baseline = self._baselines(model, version)  # may raise Unavailable: nothing written yet
        self.gauges.set_window(model, version, route, number, values)
        overall = {metric: value for seg, metric, value in values if seg == ""}
        info = self._catalog.get(model)
        events = []
        for metric in info.alert_metrics:
            value, reference = overall.get(metric), baseline.get(metric)
            if value is None or reference is None:
                continue
            higher = HIGHER_IS_BETTER.get(metric, False)
            bad = not better(value, reference, higher, info.quality.degradation_margin)
            state = self._step(conn, head, metric, bad, info.quality.consecutive_windows)
            self.gauges.degraded.labels(model, version, route, metric).set(
                1 if state in ("degraded", "degraded!") else 0
            )
            if state.endswith("!"):
                margin = abs(reference) * info.quality.degradation_margin
                events.append(
                    self._alert(
                        head,
                        metric,
                        state[:-1],
                        value,
                        reference,
                        reference + margin * (-1 if higher else 1),
                    )
                )
        conn.execute(
            update(windows)
            .where(
                windows.c.model == model,
                windows.c.version == version,
                windows.c.route == route,
                windows.c.window_no == number,
            )
            .values(evaluated=True)
        )
        return events

    @staticmethod
    def _step(conn: Connection, head: RowMapping, metric: str, bad: bool, needed: int) -> str:
        """Advance the metric's state; return it, with `!` appended when it just changed."""
        a = alert_state.c
        key = {
            "model": head["model"],
            "version": head["version"],
            "route": head["route"],
            "metric": metric,
        }
        where = [
            a.model == key["model"],
            a.version == key["version"],
            a.route == key["route"],
            a.metric == metric,
        ]
        row = conn.execute(select(a.state, a.bad, a.good).where(*where)).first()
        state, bad_run, good_run = (row[0], row[1], row[2]) if row else ("ok", 0, 0)
        bad_run, good_run = (bad_run + 1, 0) if bad else (0, good_run + 1)
        changed = ""
        if state == "ok" and bad_run >= needed:
            state, changed = "degraded", "!"
        elif state == "degraded" and good_run >= needed:
            state, changed = "recovered", "!"
        stored = "ok" if state == "recovered" else state
        values = {
            "state": stored,
            "bad": bad_run,
            "good": good_run,
            "last_window": head["window_no"],
        }
        if row is None:
            conn.execute(insert(alert_state).values(**key, **values))
        else:
            conn.execute(update(alert_state).where(*where).values(**values))
        return state + changed

    @staticmethod
    def _alert(
        head: RowMapping, metric: str, state: str, value: float, baseline: float, threshold: float
    ) -> Event:
        data: Mapping[str, Any] = {
            "model": head["model"],
            "version": head["version"],
            "route": head["route"],
            "state": state,
            "metric": metric,
            "value": value,
            "baseline": baseline,
            "threshold": threshold,
            "window": {
                "start": to_iso(head["start_time"]),
                "end": to_iso(head["end_time"]),
                "size": head["size"],
            },
        }
        event = Event.create("quality.v1", data, source=_SOURCE, subject=head["model"])
        return event.with_changes(
            id=_event_id(
                head["model"], head["version"], head["route"], metric, head["window_no"], state
            )
        )
