"""The feedback projector: applies prediction and outcome events to the read model.

It is the `ConsumerRunner` handler of the feedback consumer, so every write it makes commits with
the event's processed mark. The join is symmetric and order-insensitive:
- a prediction looks for outcomes already waiting for it; an outcome for predictions already
  stored (by id, or by model + entity key + nearest request time within the tolerance);
- an outcome that matched nothing waits until its deadline (`quality.join_window_s` of its
  model after it arrived); the sweeper then dead-letters it as an orphan;
- when a prediction has several outcomes, one wins: human over system, then the later
  observation, then the larger event id (an override, whatever the arrival order).
Reviews (`review.v1`, flagged predictions, human decisions) go to the review queue (`reviews`).
Each time a request's winning outcome changes, its training label row is recorded
(`labels.record_label`) for the offline store. The first outcome of a prediction places it in a
window of its version and route; the row that fills a window closes it; metrics follow with `windows.refresh` after the batch commits. Duplicated event ids never reach the projector
(the runner drops them); a prediction id logged twice is stored once.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.elements import ColumnElement

from loopstack.core.errors import InvalidInput
from loopstack.core.events import Event
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.errors import PoisonOutcome
from loopstack.monitoring.feedback.labels import record_label
from loopstack.monitoring.feedback.records import (
    OutcomeRow,
    PredictionRow,
    class_probabilities,
    label_key,
)
from loopstack.monitoring.feedback.reviews import (
    REVIEW,
    apply_review_event,
    review_decision,
    review_from_prediction,
)
from loopstack.monitoring.feedback.tables import (
    outcomes,
    predictions,
    push_queue,
    series,
    windows,
)
from loopstack.monitoring.feedback.windows import place_row

__all__ = ["FeedbackProjector", "utcnow"]

log = logging.getLogger(__name__)

PREDICTION = "prediction.v1"
OUTCOME = "outcome.v1"


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (the read model's time format)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class FeedbackProjector:
    """Joins predictions and outcomes into the read model and closes quality windows."""

    def __init__(
        self,
        catalog: ModelCatalog,
        *,
        entity_tolerance_s: float = 300.0,
        push_models: Collection[str] = (),
        clock: Callable[[], datetime] = utcnow,
        max_outcome_abs: float = 1e15,
    ) -> None:
        self.catalog = catalog
        self.max_outcome_abs = max_outcome_abs
        self.tolerance = timedelta(seconds=entity_tolerance_s)
        self.push_models = set(push_models)
        self.clock = clock
        self.windows_closed = 0
        """Windows closed since start (the consumer publishes alerts when this moves)."""

    def __call__(self, event: Event, conn: Connection) -> None:
        """Apply one event (the `Handler` signature); other event types are ignored."""
        name = event.name
        if name == PREDICTION:
            self.apply_prediction(event, conn)
            review_from_prediction(conn, event)
        elif name == OUTCOME:
            self.apply_outcome(event, conn)
        elif name == REVIEW:
            apply_review_event(conn, event)

    # -- predictions ---------------------------------------------------------------------------

    def apply_prediction(self, event: Event, conn: Connection) -> None:
        """Store a prediction and join the outcomes already waiting for it."""
        info = self.catalog.get(str(event.data["model"]))
        row = PredictionRow.from_event(event, info.segments)
        p = predictions.c
        if conn.execute(
            select(p.prediction_id).where(p.prediction_id == row.prediction_id)
        ).first():
            return
        conn.execute(
            insert(predictions).values(
                prediction_id=row.prediction_id,
                model=row.model,
                version=row.version,
                route=row.route,
                request_time=row.request_time,
                correlation=row.correlation,
                entity=row.entity,
                status=row.status,
                score=row.score,
                segments=json.dumps(row.segments, sort_keys=True),
                document=row.document,
                event_id=row.event_id,
            )
        )
        if row.status != "ok" or row.score is None:
            return
        o = outcomes.c
        ids = [i for i in (row.prediction_id, row.correlation) if i]
        # Two indexed lookups (an OR of them would scan the table on SQLite).
        matches: list[ColumnElement[bool]] = [o.prediction_id.in_(ids)]
        if row.entity is not None:
            matches.append(
                and_(
                    o.model == row.model,
                    o.entity == row.entity,
                    o.event_time >= row.request_time - self.tolerance,
                    o.event_time <= row.request_time + self.tolerance,
                )
            )
        found = {
            r.event_id: r
            for match in matches
            for r in conn.execute(select(outcomes).where(match)).mappings()
        }
        waiting = [
            OutcomeRow(
                event_id=r.event_id,
                prediction_id=r.prediction_id,
                model=r.model,
                entity=r.entity,
                event_time=r.event_time,
                value=r.value,
                value_json=r.value_json,
                source=r.source,
                observed_at=r.observed_at,
            )
            for r in found.values()
        ]
        waiting = [w for w in waiting if w.prediction_id or not self._taken(conn, w, row)]
        if not waiting:
            return
        current = conn.execute(select(predictions).where(p.prediction_id == row.prediction_id))
        stored = current.mappings().one()
        # An outcome that names no class of this answer must not outrank a valid one.
        fitting = [w for w in waiting if _fits(stored, w)] or waiting
        best = max(fitting, key=lambda w: (w.source == "human", w.observed_at, w.event_id))
        self._set_outcome(conn, stored, best)
        conn.execute(
            update(outcomes)
            .where(o.event_id.in_([w.event_id for w in waiting]))
            .values(matched=True)
        )

    def _taken(self, conn: Connection, outcome: OutcomeRow, row: PredictionRow) -> bool:
        """Whether an entity outcome already labels another prediction of the same version and
        route (it labels one prediction per version and route: the nearest it met first)."""
        p = predictions.c
        return (
            conn.execute(
                select(p.prediction_id).where(
                    p.outcome_event_id == outcome.event_id,
                    p.version == row.version,
                    p.route == row.route,
                )
            ).first()
            is not None
        )

    # -- outcomes ------------------------------------------------------------------------------

    def apply_outcome(self, event: Event, conn: Connection) -> None:
        """Join an outcome to its predictions, or keep it waiting for them."""
        outcome = OutcomeRow.from_event(event)
        if outcome.value is None and not isinstance(outcome.label, str):
            raise InvalidInput(f"outcome {event.id}: value {outcome.value_json} is not a label")
        if outcome.value is not None and abs(outcome.value) > self.max_outcome_abs:
            raise PoisonOutcome(
                event.id,
                outcome.value_json,
                f"its magnitude exceeds feedback.max_outcome_abs ({self.max_outcome_abs:g})",
            )
        info = self.catalog.get(outcome.model)
        now = self.clock()
        matched = self._matching_predictions(conn, outcome)
        if matched and not any(_fits(p, outcome) for p in matched):
            first = matched[0]
            raise PoisonOutcome(
                event.id,
                outcome.value_json,
                f"it is not {_allowed(first)}, as prediction {first['prediction_id']!r} of "
                f"model {first['model']!r} needs",
            )
        for prediction in matched:
            self._set_outcome(conn, prediction, outcome)
        conn.execute(
            insert(outcomes).values(
                event_id=outcome.event_id,
                prediction_id=outcome.prediction_id,
                model=outcome.model,
                entity=outcome.entity,
                event_time=outcome.event_time,
                value=outcome.value,
                value_json=outcome.value_json,
                source=outcome.source,
                observed_at=outcome.observed_at,
                key=event.partitionkey,
                payload=event.to_json(),
                matched=bool(matched),
                first_seen=now,
                deadline=now + timedelta(seconds=info.quality.join_window_s),
            )
        )
        if outcome.entity and outcome.event_time and outcome.model in self.push_models:
            self._record_series(conn, outcome.model, outcome.entity, outcome.event_time, outcome)
        review_decision(conn, event, outcome)

    def _matching_predictions(self, conn: Connection, outcome: OutcomeRow) -> list[RowMapping]:
        p = predictions.c
        joinable = and_(p.status == "ok", p.score.is_not(None))
        if outcome.prediction_id:
            query = select(predictions).where(
                joinable,
                or_(
                    p.prediction_id == outcome.prediction_id, p.correlation == outcome.prediction_id
                ),
            )
            return list(conn.execute(query).mappings())
        if not (outcome.model and outcome.entity and outcome.event_time):
            return []
        query = select(predictions).where(
            joinable,
            p.model == outcome.model,
            p.entity == outcome.entity,
            p.request_time >= outcome.event_time - self.tolerance,
            p.request_time <= outcome.event_time + self.tolerance,
        )
        nearest: dict[tuple[str, str], RowMapping] = {}
        for row in conn.execute(query).mappings():
            key = (row["version"], row["route"])
            if key not in nearest or self._nearer(row, nearest[key], outcome.event_time):
                nearest[key] = row
        return list(nearest.values())

    @staticmethod
    def _nearer(a: RowMapping, b: RowMapping, when: datetime) -> bool:
        da, db = abs(a["request_time"] - when), abs(b["request_time"] - when)
        return (da, b["prediction_id"]) < (db, a["prediction_id"])

    # -- the join itself -----------------------------------------------------------------------

    def _set_outcome(self, conn: Connection, prediction: RowMapping, outcome: OutcomeRow) -> None:
        """Put `outcome` on `prediction` if it wins; place the row and close or recompute its
        window (with the prediction's model: an outcome by id may name none)."""
        info = self.catalog.get(prediction["model"])
        if not _fits(prediction, outcome):
            # Intake checks outcomes against the model's classes, but one sent by prediction id
            # before its prediction was stored could not be: it labels nothing rather than
            # poisoning the window's metrics.
            log.warning(
                "feedback: outcome %s (%s) is not a valid outcome of prediction %s of %r; ignored",
                outcome.event_id,
                outcome.value_json,
                prediction["prediction_id"],
                prediction["model"],
            )
            return
        if not outcome.beats(
            prediction["outcome_source"], prediction["observed_at"], prediction["outcome_event_id"]
        ):
            return
        values: dict[str, Any] = {
            "outcome_event_id": outcome.event_id,
            "outcome_value": outcome.value,
            "outcome_json": outcome.value_json,
            "outcome_source": outcome.source,
            "observed_at": outcome.observed_at,
        }
        model, version, route = prediction["model"], prediction["version"], prediction["route"]
        first = prediction["outcome_event_id"] is None
        if first:
            values["joined_at"] = self.clock()
        p = predictions.c
        conn.execute(
            update(predictions)
            .where(p.prediction_id == prediction["prediction_id"])
            .values(**values)
        )
        if first:
            self.windows_closed += place_row(
                conn,
                model,
                version,
                route,
                prediction["prediction_id"],
                prediction["request_time"],
                size=info.quality.window_size,
                now=self.clock(),
            )
        elif prediction["window_no"] is not None:
            w = windows.c
            conn.execute(
                update(windows)
                .where(
                    w.model == model,
                    w.version == version,
                    w.route == route,
                    w.window_no == prediction["window_no"],
                )
                .values(dirty=True)
            )
        if prediction["correlation"] is None:  # a shadow answered no caller: no label of its own
            record_label(conn, info, prediction, outcome, self.clock())
        if model in self.push_models and prediction["entity"] and outcome.event_time is None:
            self._record_series(
                conn, model, prediction["entity"], prediction["request_time"], outcome
            )

    @staticmethod
    def _record_series(
        conn: Connection, model: str, entity: str, when: datetime, outcome: OutcomeRow
    ) -> None:
        """Keep the entity's observed target of that hour and queue a lag push for the next."""
        s = series.c
        hour = _hour(when)
        where = (s.model == model, s.entity == entity, s.hour == hour)
        current = conn.execute(select(s.source, s.observed_at, s.event_id).where(*where)).first()
        values = {
            "value": outcome.value,
            "source": outcome.source,
            "observed_at": outcome.observed_at,
            "event_id": outcome.event_id,
        }
        if current is None:
            conn.execute(insert(series).values(model=model, entity=entity, hour=hour, **values))
        elif outcome.beats(current[0], current[1], current[2]):
            conn.execute(update(series).where(*where).values(**values))
        else:
            return
        q = push_queue.c
        queued = conn.execute(
            select(q.hour).where(q.model == model, q.entity == entity, q.hour == hour)
        ).first()
        if queued is None:
            conn.execute(insert(push_queue).values(model=model, entity=entity, hour=hour))


def _allowed(prediction: RowMapping) -> str:
    """What may label `prediction`, for messages."""
    classes = class_probabilities(json.loads(prediction["document"]))
    if classes is not None:
        return "one of the classes " + ", ".join(classes)
    return "a finite number"


def _fits(prediction: RowMapping, outcome: OutcomeRow) -> bool:
    """Whether `outcome` can label `prediction`: one of its classes for a classifier's answer, a
    finite number otherwise."""
    classes = class_probabilities(json.loads(prediction["document"]))
    if classes is not None:
        return label_key(outcome.label, classes) is not None
    return outcome.value is not None and math.isfinite(outcome.value)
