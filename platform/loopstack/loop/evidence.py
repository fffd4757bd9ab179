"""What the controller reads from the feedback read model: labels, shadow pairs, canary health."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Engine, and_, case, func, select

from loopstack.loop.stats import losses
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
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.max(predictions.c.request_time)).where(
                    predictions.c.model == model,
                    predictions.c.outcome_value.is_not(None),
                    predictions.c.request_time <= until,
                )
            ).scalar()

    def pairs(self, model: str, task: str, champion: str, challenger: str) -> Pairs:
        """Shadow answers of `challenger` paired with the `champion` answers the callers got.

        Matched by ids (the shadow row's correlation is the served prediction's id), not by
        time: a replay of past event times after live requests still counts every pair."""
        shadow, served = predictions.alias("shadow"), predictions.alias("served")
        query = (
            select(served.c.score, shadow.c.score, served.c.outcome_value)
            .select_from(shadow.join(served, served.c.prediction_id == shadow.c.correlation))
            .where(
                shadow.c.model == model,
                shadow.c.version == challenger,
                shadow.c.route == "shadow",
                served.c.version == champion,
                served.c.status == "ok",
                served.c.outcome_value.is_not(None),
                # A failed shadow answer is a pair too: the worst loss, not a missing row.
                shadow.c.outcome_value.is_not(None) | (shadow.c.status != "ok"),
            )
            .order_by(shadow.c.request_time, shadow.c.prediction_id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return Pairs(np.zeros(0), np.zeros(0))
        outcome = [r[2] for r in rows]
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
        with self.engine.connect() as conn:
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


def _latency(document: str) -> float | None:
    value = json.loads(document).get("latency_ms")
    return float(value) if isinstance(value, int | float) else None
