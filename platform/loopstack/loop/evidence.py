"""What the controller reads from the feedback read model: labels, shadow pairs, canary health."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Engine, FromClause, Row, and_, case, func, select

from loopstack.core.events.store import reading
from loopstack.loop.stats import class_losses, losses
from loopstack.monitoring.feedback.records import class_probabilities, label_key
from loopstack.monitoring.feedback.tables import predictions

__all__ = ["Pairs", "RouteHealth", "RolloutEvidence"]


@dataclass(frozen=True)
class Pairs:
    """Per-request losses of champion and challenger on the same labelled requests, in order."""

    champion: np.ndarray
    challenger: np.ndarray


@dataclass(frozen=True)
class RouteHealth:
    """Requests, failures and p99 latency of one version on one route since a time."""

    requests: int
    errors: int
    p99_latency_ms: float | None

    @property
    def error_rate(self) -> float:
        """Failed share of the requests (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0


class RolloutEvidence:
    """Queries over `feedback_predictions` (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def labelled_until(self, model: str, until: datetime) -> datetime | None:
        """Request time of the model's latest prediction with a known outcome, at or before
        `until` (model time: after a replay rewound the clock, later live rows do not count)."""
        with reading(self.engine) as conn:
            return conn.execute(
                select(func.max(predictions.c.request_time)).where(
                    predictions.c.model == model,
                    _labelled(predictions),
                    predictions.c.request_time <= until,
                )
            ).scalar()

    def pairs(self, model: str, task: str, champion: str, challenger: str) -> Pairs:
        """Shadow answers of `challenger` paired with the `champion` answers the callers got.

        Matched by ids (the shadow row's correlation is the served prediction's id), not by
        time: a replay of past event times after live requests still counts every pair. A
        classifier's losses come from the class probabilities each answer logged (`class_losses`)
        when the answers have them."""
        shadow, served = predictions.alias("shadow"), predictions.alias("served")
        query = (
            select(
                served.c.score,
                shadow.c.score,
                served.c.outcome_value,
                served.c.outcome_json,
                served.c.document,
                shadow.c.document,
            )
            .select_from(shadow.join(served, served.c.prediction_id == shadow.c.correlation))
            .where(
                shadow.c.model == model,
                shadow.c.version == challenger,
                shadow.c.route == "shadow",
                served.c.version == champion,
                served.c.status == "ok",
                _labelled(served),
                # A failed shadow answer is a pair too: the worst loss, not a missing row.
                _labelled(shadow) | (shadow.c.status != "ok"),
            )
            .order_by(shadow.c.request_time, shadow.c.prediction_id)
        )
        with reading(self.engine) as conn:
            rows = conn.execute(query).all()
        if not rows:
            return Pairs(np.zeros(0), np.zeros(0))
        if task == "classification":
            found = _class_pairs(rows)
            if found is not None:
                return found
        outcome = [np.nan if r[2] is None else r[2] for r in rows]
        champion_scores = [np.nan if r[0] is None else r[0] for r in rows]
        challenger_scores = [np.nan if r[1] is None else r[1] for r in rows]
        return Pairs(
            losses(task, champion_scores, outcome), losses(task, challenger_scores, outcome)
        )

    def health(
        self, model: str, version: str, route: str, since: datetime, latency: bool = False
    ) -> RouteHealth:
        """Requests and errors of `version` on `route` since `since` (and the p99 latency of
        the latest 1,000 when `latency`)."""
        where = and_(
            predictions.c.model == model,
            predictions.c.version == version,
            predictions.c.route == route,
            predictions.c.request_time >= since,
        )
        failed = func.sum(case((predictions.c.status != "ok", 1), else_=0))
        with reading(self.engine) as conn:
            total, errors = conn.execute(select(func.count(), failed).where(where)).one()
            documents = (
                conn.execute(
                    select(predictions.c.document)
                    .where(where)
                    .order_by(predictions.c.request_time.desc())
                    .limit(1000)
                ).scalars().all()
                if latency
                else []
            )  # fmt: skip
        values = [v for v in (_latency(d) for d in documents) if v is not None]
        p99 = float(np.percentile(values, 99)) if values else None
        return RouteHealth(int(total or 0), int(errors or 0), p99)


def _labelled(table: FromClause) -> ColumnElement[bool]:
    """Rows with an outcome: a number, or a class name (whose number is None)."""
    return table.c.outcome_value.is_not(None) | table.c.outcome_json.is_not(None)


def _class_pairs(rows: Sequence[Row[Any, Any, Any, Any, Any, Any]]) -> Pairs | None:
    """Losses on the logged class probabilities; None when the champion's answers have none
    (answers logged before class probabilities were, or without class names)."""
    served = [class_probabilities(json.loads(r[4])) for r in rows]
    if any(p is None for p in served):
        return None
    shadow = [class_probabilities(json.loads(r[5])) for r in rows]
    labels = [json.loads(r[3]) if r[3] is not None else None for r in rows]

    def keys(answers: list[dict[str, float] | None]) -> list[str | None]:
        return [
            None if a is None or y is None else label_key(y, a)
            for a, y in zip(answers, labels, strict=True)
        ]

    return Pairs(class_losses(served, keys(served)), class_losses(shadow, keys(shadow)))


def _latency(document: str) -> float | None:
    value = json.loads(document).get("latency_ms")
    return float(value) if isinstance(value, int | float) else None
