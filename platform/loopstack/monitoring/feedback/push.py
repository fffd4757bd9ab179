"""Fresh lag features: outcomes refresh the online store through a Feast push source.

For a model in `feedback.push_sources`, every outcome of an entity's hour H is kept (the
`feedback_series` table) and the entity's current lag row is pushed: the row timestamped
T = (latest observed hour) + 1h, built exactly as the training data's lag rows are
(`feature_repo/data/prepare.py`), from the features of the push source's feature view, found by
name suffix:
- `*_last_hour`: the value of hour T-1h (None if that hour is missing);
- `*_same_hour_yesterday`: the value of hour T-24h (None if missing);
- `*_mean_7d`: the mean over observed hours in [T-168h, T-1h], None under 24 of them, rounded
  to 4 decimals.
Serving thus reads the same definitions training did. A late outcome of an older hour re-pushes
the current row (its 7-day mean changed). Pushes are idempotent; a failed push stays queued.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from loopstack.monitoring.feedback.errors import FeatureSourceMissing
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.tables import push_queue, series

__all__ = ["LagPusher", "lag_row"]

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
TRAILING_HOURS = 168
TRAILING_MIN_HOURS = 24


def lag_row(values: Mapping[datetime, float], at: datetime) -> dict[str, Any]:
    """The lag values known at `at` (an hour start) from hourly `values` (hour start -> value)."""
    last = values.get(at - HOUR)
    yesterday = values.get(at - timedelta(hours=24))
    trailing = [
        values[h] for h in (at - HOUR * k for k in range(1, TRAILING_HOURS + 1)) if h in values
    ]
    mean = round(sum(trailing) / len(trailing), 4) if len(trailing) >= TRAILING_MIN_HOURS else None
    return {
        "last_hour": None if last is None else round(last),
        "same_hour_yesterday": None if yesterday is None else round(yesterday),
        "mean_7d": mean,
    }


class LagPusher:
    """Pushes the current lag row of every entity whose observed values changed."""

    def __init__(
        self,
        read_model: ReadModel,
        push_sources: Mapping[str, str],
        open_store: Callable[[], Any],
    ) -> None:
        self._rm = read_model
        self._sources = dict(push_sources)
        self._open_store = open_store
        self._store: Any = None
        self._names: dict[str, dict[str, str]] = {}

    def _feature_names(self, model: str, source: str) -> dict[str, str]:
        """Suffix (`last_hour`, ...) -> feature name in the view fed by `source`."""
        if source not in self._names:
            for view in self._store.list_feature_views():
                stream = getattr(view, "stream_source", None)
                if stream is not None and stream.name == source:
                    names = {}
                    for feature in view.features:
                        for suffix in ("last_hour", "same_hour_yesterday", "mean_7d"):
                            if feature.name.endswith("_" + suffix):
                                names[suffix] = feature.name
                    self._names[source] = names
                    break
            else:
                raise FeatureSourceMissing(model, source)
        return self._names[source]

    def drain(self, limit: int = 1000) -> int:
        """Push the current row of queued entities; return how many rows were pushed."""
        q, s = push_queue.c, series.c
        with self._rm.engine.connect() as conn:
            queued = list(conn.execute(select(q.model, q.entity, q.hour).limit(limit)))
        if not queued:
            return 0
        if self._store is None:
            self._store = self._open_store()
        pushed = 0
        for model, entity in sorted({(m, e) for m, e, _ in queued}):
            source = self._sources.get(model)
            if source is not None:
                with self._rm.engine.connect() as conn:
                    last = conn.execute(
                        select(s.hour)
                        .where(s.model == model, s.entity == entity)
                        .order_by(s.hour.desc())
                        .limit(1)
                    ).scalar_one()
                    at = last + HOUR
                    values = {
                        h: float(v)
                        for h, v in conn.execute(
                            select(s.hour, s.value).where(
                                s.model == model,
                                s.entity == entity,
                                s.hour >= at - HOUR * TRAILING_HOURS,
                                s.hour < at,
                            )
                        )
                    }
                self._push(model, source, entity, at, lag_row(values, at))
                pushed += 1
            with self._rm.engine.begin() as conn:
                hours = [h for m, e, h in queued if (m, e) == (model, entity)]
                conn.execute(
                    delete(push_queue).where(
                        q.model == model, q.entity == entity, q.hour.in_(hours)
                    )
                )
        return pushed

    def _push(
        self, model: str, source: str, entity: str, at: datetime, row: dict[str, Any]
    ) -> None:
        import pandas as pd
        from feast.data_source import PushMode

        names = self._feature_names(model, source)
        frame: dict[str, Any] = {k: [v] for k, v in json.loads(entity).items()}
        frame["event_timestamp"] = [at.replace(tzinfo=UTC)]
        for suffix, name in names.items():
            value = row[suffix]
            frame[name] = pd.array([value], dtype="Float64" if suffix == "mean_7d" else "Int64")
        self._store.push(source, pd.DataFrame(frame), to=PushMode.ONLINE)
        log.debug("feedback: pushed %s row for %s at %s: %s", source, entity, at, row)
