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
Offline, the push source's dataset in the state dir (`loopstack.features.offline`) gets the
pushed row and, for every hour H an outcome came for, the row at H+1h (outcomes sent as a batch
still leave one row per hour, as the training files have), with `written_at` as the created
timestamp: a training set built after live traffic joins the rows serving read, the latest write
of an hour winning. (A late outcome rewrites only the row after its hour and the current one.)
Hours before the first fed-back one come from the model's label file (the seed of its label
dataset), so the rows after the history's end are built as the training files' were.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from loopstack.core.errors import LoopstackError
from loopstack.monitoring.feedback.catalog import ModelCatalog, ModelInfo
from loopstack.monitoring.feedback.errors import FeatureSourceMissing
from loopstack.monitoring.feedback.projector import utcnow
from loopstack.monitoring.feedback.records import canonical_entity
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
        clock: Callable[[], datetime] = utcnow,
        catalog: ModelCatalog | None = None,
    ) -> None:
        self.clock = clock
        self._catalog = catalog
        self._history: dict[str, dict[str, dict[datetime, float]]] = {}
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
        """Push the current row of queued entities online; write it and the row after every
        queued hour to the push source's offline dataset; return the rows written offline.
        Queue entries go once both writes are done (a crash re-pushes the same rows:
        idempotent online, the newer copy wins offline)."""
        q, s = push_queue.c, series.c
        with self._rm.engine.connect() as conn:
            queued = list(conn.execute(select(q.model, q.entity, q.hour).limit(limit)))
        if not queued:
            return 0
        # Feast and pandas take seconds to import: only a consumer with pushes to make pays.
        import pandas as pd
        from feast.data_source import PushMode

        from loopstack.features.offline import append_rows

        if self._store is None:
            self._store = self._open_store()
        frames: dict[str, list[Any]] = {}
        written = self.clock()
        for model, entity in sorted({(m, e) for m, e, _ in queued}):
            source = self._sources.get(model)
            if source is None:
                continue
            hours = {h for m, e, h in queued if (m, e) == (model, entity)}
            with self._rm.engine.connect() as conn:
                observed = {
                    h: float(v)
                    for h, v in conn.execute(
                        select(s.hour, s.value).where(
                            s.model == model,
                            s.entity == entity,
                            s.hour >= min(hours) + HOUR - HOUR * TRAILING_HOURS,
                        )
                    )
                }
            # Hours fed back win; older ones come from the label file the first model trained on.
            values = {**self._file_history(model).get(entity, {}), **observed}
            at = max(observed) + HOUR
            current = self._frame(model, source, entity, at, lag_row(values, at), written)
            self._store.push(source, current, to=PushMode.ONLINE)
            log.debug("feedback: pushed %s row for %s at %s", source, entity, at)
            # Offline, the row of every hour an outcome came for (outcomes sent in a batch
            # still leave one row per hour for training), and the current one.
            frames.setdefault(source, []).extend(
                self._frame(model, source, entity, t, lag_row(values, t), written)
                for t in sorted({h + HOUR for h in hours} - {at})
            )
            frames[source].append(current)
        for source, parts in frames.items():
            # One part per drain and source, named by its write time: rows of a retried drain
            # land in a new part, and the source's created timestamp makes the newest win.
            append_rows(
                self._store,
                source,
                pd.concat(parts, ignore_index=True),
                f"lags-{written:%Y%m%dT%H%M%S%f}",
            )
        with self._rm.engine.begin() as conn:
            for model, entity, hour in queued:
                conn.execute(
                    delete(push_queue).where(q.model == model, q.entity == entity, q.hour == hour)
                )
        return sum(len(parts) for parts in frames.values())  # rows written offline

    def _file_history(self, model: str) -> dict[str, dict[datetime, float]]:
        """Entity -> hour -> target of the model's label file rows (read once per process)."""
        if model not in self._history:
            info = self._catalog.get(model) if self._catalog is not None else None
            if info is None or not info.has_spec:
                self._history[model] = {}
            else:
                try:
                    self._history[model] = self._read_history(info)
                except LoopstackError as exc:  # not applied yet: rows from feedback alone
                    log.warning("feedback: no label history for %r lags: %s", model, exc)
                    return {}
        return self._history[model]

    def _read_history(self, info: ModelInfo) -> dict[str, dict[datetime, float]]:
        import pandas as pd

        from loopstack.features.offline import SEED, dataset_files
        from loopstack.features.registry import feature_service, label_source

        source = label_source(self._store, feature_service(self._store, info.feature_service))
        seeds = [p for p in dataset_files(source.path) if p.name == SEED]
        if not seeds:
            return {}
        ts = source.timestamp_field
        frame = pd.read_parquet(seeds[0], columns=[info.join_key, ts, info.target]).dropna()
        hours = pd.to_datetime(frame[ts], utc=True).dt.tz_localize(None).dt.floor("h")
        out: dict[str, dict[datetime, float]] = {}
        for key, hour, value in zip(frame[info.join_key], hours, frame[info.target], strict=True):
            entity = canonical_entity({info.join_key: key})
            if entity is not None:
                out.setdefault(entity, {})[hour.to_pydatetime()] = float(value)
        return out

    def _frame(
        self,
        model: str,
        source: str,
        entity: str,
        at: datetime,
        row: dict[str, Any],
        written: datetime,
    ) -> Any:
        import pandas as pd

        from loopstack.features.offline import WRITTEN_AT

        names = self._feature_names(model, source)
        frame: dict[str, Any] = {k: [v] for k, v in json.loads(entity).items()}
        frame["event_timestamp"] = [at.replace(tzinfo=UTC)]
        for suffix, name in names.items():
            value = row[suffix]
            frame[name] = pd.array([value], dtype="Float64" if suffix == "mean_7d" else "Int64")
        frame[WRITTEN_AT] = [written.replace(tzinfo=UTC)]
        return pd.DataFrame(frame)
