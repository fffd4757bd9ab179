"""Count-based quality windows: the metrics of a window, overall, by segment, and their gaps.

Window `k` of a model version and route holds its joined predictions ranked `k*size` to
`(k+1)*size - 1` by (request time, prediction id); size is the spec's `quality.window_size`
(default 200). Ranking by prediction time, not by arrival, makes the windows a function of the
joined rows alone: the same after a crash and restart, a replay or a rebuild, whatever order the
log delivered the events in.

Joining is cheap and metrics are computed once per batch:
- `place_row` (in the event's transaction) counts the row, gives it its provisional window, marks
  dirty every closed window whose membership it shifts (an outcome of a prediction older than
  the newest joined one), and records a new closed window when the count reaches a multiple of
  `size`; an override marks its row's window dirty (`mark_dirty`);
- `refresh` (after the batch commits) renumbers the rows from the first dirty window on and
  recomputes the dirty windows, a bounded number per transaction (a rebuild's hundreds of
  windows never hold the database for long). In the usual case outcomes arrive roughly in
  prediction order and only the newly closed window is computed.

A window whose metrics cannot be computed (a value older than intake's checks, a bug) never stops
the consumer nor the other windows: it is recorded as failed with the reason
(`feedback_window_failures`, shown by the quality API), logged once, and computed again when a
later outcome changes it. Values are clipped to +-`VALUE_CLIP` first, so no finite outcome or
score can overflow a metric.

A classifier's window is scored on the class probabilities its answers logged: two classes get
the binary metrics on P(second class), three or more accuracy, macro-F1 and log-loss.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from loopstack.core.events.store import reading
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.records import class_probabilities, label_key
from loopstack.monitoring.feedback.tables import (
    counters,
    predictions,
    window_failures,
    window_metrics,
    windows,
)
from loopstack.pipelines.metrics import task_metrics

__all__ = [
    "VALUE_CLIP",
    "JoinedRow",
    "WindowKey",
    "mark_dirty",
    "place_row",
    "refresh",
    "window_failure_counts",
    "window_metric_rows",
]

log = logging.getLogger(__name__)

VALUE_CLIP = 1e100
"""Outcomes and scores are clipped to +-this before metrics: (2 * 1e100)**2 times any window size
stays far below the largest float, so no sum of squares overflows."""

REFRESH_CHUNK = 20
"""Windows recomputed per transaction."""
_MAX_CHUNKS = 1000
"""Chunks per version and route in one `refresh` (joins racing it cannot keep it going; what is
left waits for the next call)."""


@dataclass(frozen=True, slots=True)
class WindowKey:
    """One window of one model version and route."""

    model: str
    version: str
    route: str
    window_no: int


@dataclass(frozen=True, slots=True)
class JoinedRow:
    """What metrics need of one joined prediction."""

    y: float
    score: float
    human: bool
    segments: dict[str, str]
    request_time: datetime
    probabilities: dict[str, float] | None = None
    """A classifier's answer: class -> probability, in the model's order."""
    label: str | None = None
    """A classifier's outcome: the class it names (a key of `probabilities`)."""


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _clip(value: float) -> float:
    return value if math.isnan(value) else min(VALUE_CLIP, max(-VALUE_CLIP, value))


def _metrics(task: str, rows: Sequence[JoinedRow]) -> dict[str, float | None]:
    classes = _classes(rows)
    # Clipped values cannot overflow RMSE or MAE; a ratio that still does (MAPE of a target
    # near zero) is not finite and stored as undefined, like AUC of one class.
    with np.errstate(all="ignore"):
        if task == "classification" and classes is not None:
            proba = [[(r.probabilities or {}).get(c, 0.0) for c in classes] for r in rows]
            values = task_metrics(task, [r.label for r in rows], proba, classes)
        else:
            values = task_metrics(task, [_clip(r.y) for r in rows], [_clip(r.score) for r in rows])
    return {k: _finite(v) for k, v in values.items()}


def _classes(rows: Sequence[JoinedRow]) -> list[str] | None:
    """The class order of a window's answers (the first row's), if every row has one."""
    if not rows or any(r.probabilities is None or r.label is None for r in rows):
        return None
    first = rows[0].probabilities or {}
    return list(first)


def window_metric_rows(
    task: str, rows: Sequence[JoinedRow], segment_names: Sequence[str]
) -> list[tuple[str, str, float | None]]:
    """(segment, metric, value) of a window: overall (segment `""`) with `count` and
    `override_rate`; per segment value (`"season=1"`); per segment column the gap between the
    best and the worst value (`"season"`), for metrics defined on at least two values."""
    overall = _metrics(task, rows)
    overall["count"] = float(len(rows))
    overall["override_rate"] = sum(r.human for r in rows) / len(rows) if rows else None
    out = [("", metric, value) for metric, value in overall.items()]
    for name in segment_names:
        groups: dict[str, list[JoinedRow]] = {}
        for row in rows:
            if name in row.segments:
                groups.setdefault(row.segments[name], []).append(row)
        per_value = {value: _metrics(task, group) for value, group in sorted(groups.items())}
        for value, metrics in per_value.items():
            out.extend((f"{name}={value}", m, v) for m, v in metrics.items())
            out.append((f"{name}={value}", "count", float(len(groups[value]))))
        for metric in overall:
            if metric in ("count", "override_rate"):
                continue
            found = [v for m in per_value.values() if (v := m.get(metric)) is not None]
            if len(found) >= 2:
                out.append((name, metric, float(max(found) - min(found))))
    return out


def _same(model: str, version: str, route: str) -> tuple[object, ...]:
    p = predictions.c
    return (
        p.model == model,
        p.version == version,
        p.route == route,
        p.outcome_event_id.is_not(None),
    )


def _count_and_lock(conn: Connection, model: str, version: str, route: str) -> int:
    """Joined rows of a version and route before this one; counts this one. The counter row is
    locked (PostgreSQL) or the database is (SQLite), so concurrent joins of one version and route
    serialize; a concurrent first insert fails its batch, which the runner retries."""
    c = counters.c
    where = (c.model == model, c.version == version, c.route == route)
    found = conn.execute(select(c.joined).where(*where).with_for_update()).first()
    if found is None:
        conn.execute(insert(counters).values(model=model, version=version, route=route, joined=1))
        return 0
    conn.execute(update(counters).where(*where).values(joined=c.joined + 1))
    return int(found[0])


def mark_dirty(conn: Connection, model: str, version: str, route: str, first: int) -> None:
    """Mark the closed windows from number `first` on for recomputation."""
    w = windows.c
    conn.execute(
        update(windows)
        .where(w.model == model, w.version == version, w.route == route, w.window_no >= first)
        .values(dirty=True)
    )


def place_row(
    conn: Connection,
    model: str,
    version: str,
    route: str,
    prediction_id: str,
    request_time: datetime,
    *,
    size: int,
    now: datetime,
) -> int:
    """Count a just-joined row, give it its window, mark shifted windows dirty, record a newly
    closed window (its metrics come with the next `refresh`).

    Returns:
        How many windows closed (0 or 1).
    """
    total = _count_and_lock(conn, model, version, route)
    p = predictions.c
    later = or_(
        p.request_time > request_time,
        and_(p.request_time == request_time, p.prediction_id > prediction_id),
    )
    after = 0
    if total:
        after = int(
            conn.execute(
                select(func.count()).where(
                    *_same(model, version, route),  # type: ignore[arg-type]
                    p.prediction_id != prediction_id,
                    later,
                )
            ).scalar_one()
        )
    rank = total - after
    conn.execute(
        update(predictions).where(p.prediction_id == prediction_id).values(window_no=rank // size)
    )
    if after:
        mark_dirty(conn, model, version, route, rank // size)
    if (total + 1) % size:
        return 0
    conn.execute(
        insert(windows).values(
            model=model,
            version=version,
            route=route,
            window_no=total // size,
            start_time=request_time,
            end_time=request_time,
            size=size,
            closed_at=now,
            evaluated=False,
            dirty=True,
        )
    )
    return 1


def _renumber(
    conn: Connection, model: str, version: str, route: str, first: int, size: int
) -> None:
    """Set `window_no` = rank // size for the rows ranked from `first * size` on."""
    p = predictions.c
    rows = conn.execute(
        select(p.prediction_id, p.window_no)
        .where(*_same(model, version, route))  # type: ignore[arg-type]
        .order_by(p.request_time, p.prediction_id)
        .offset(first * size)
    ).all()
    moved = [
        {"pid": pid, "w": (first * size + i) // size}
        for i, (pid, window_no) in enumerate(rows)
        if window_no != (first * size + i) // size
    ]
    if moved:
        conn.execute(
            update(predictions)
            .where(p.prediction_id == bindparam("pid"))
            .values(window_no=bindparam("w")),
            moved,
        )


def _rows(conn: Connection, key: WindowKey) -> list[JoinedRow]:
    p = predictions.c
    found = conn.execute(
        select(
            p.outcome_value,
            p.outcome_json,
            p.score,
            p.outcome_source,
            p.segments,
            p.request_time,
            p.document,
        )
        .where(
            *_same(key.model, key.version, key.route),  # type: ignore[arg-type]
            p.window_no == key.window_no,
        )
        .order_by(p.request_time, p.prediction_id)
    )
    out = []
    for y, raw, s, source, seg, t, document in found:
        probabilities = class_probabilities(json.loads(document))
        label = None
        if probabilities is not None and raw is not None:
            label = label_key(json.loads(raw), probabilities)
        number = float(y) if y is not None else math.nan
        out.append(
            JoinedRow(number, float(s), source == "human", json.loads(seg), t, probabilities, label)
        )
    return out


def _recompute(conn: Connection, key: WindowKey, task: str, segments: Sequence[str]) -> None:
    """Compute a window's metrics, or record why they cannot be (database errors propagate)."""
    w, m, f = windows.c, window_metrics.c, window_failures.c
    this = (
        (w.model == key.model, w.version == key.version, w.route == key.route),
        (m.model == key.model, m.version == key.version, m.route == key.route),
        (f.model == key.model, f.version == key.version, f.route == key.route),
    )
    rows: list[JoinedRow] = []
    try:
        rows = _rows(conn, key)
        values = window_metric_rows(task, rows, segments)
        reason = None
    except SQLAlchemyError:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"[:1000]
    conn.execute(delete(window_metrics).where(*this[1], m.window_no == key.window_no))
    conn.execute(delete(window_failures).where(*this[2], f.window_no == key.window_no))
    bounds = (
        {
            "start_time": min(r.request_time for r in rows),
            "end_time": max(r.request_time for r in rows),
            "size": len(rows),
        }
        if rows
        else {}
    )
    conn.execute(
        update(windows).where(*this[0], w.window_no == key.window_no).values(dirty=False, **bounds)
    )
    if reason is not None:
        # Logged once per computation: the window is not retried until an outcome changes it.
        log.error(
            "feedback: window %d of %s v%s (%s) has no metrics: %s; the other windows go on",
            key.window_no,
            key.model,
            key.version,
            key.route,
            reason,
        )
        conn.execute(
            insert(window_failures).values(
                model=key.model,
                version=key.version,
                route=key.route,
                window_no=key.window_no,
                reason=reason,
                failed_at=datetime.now(UTC).replace(tzinfo=None),
            )
        )
        return
    conn.execute(
        insert(window_metrics),
        [
            {
                "model": key.model,
                "version": key.version,
                "route": key.route,
                "window_no": key.window_no,
                "segment": segment,
                "metric": metric,
                "value": value,
            }
            for segment, metric, value in values
        ],
    )


def refresh(engine: Engine, catalog: ModelCatalog) -> int:
    """Renumber and recompute every dirty window, `REFRESH_CHUNK` windows per transaction;
    return how many were computed (failed ones included)."""
    w = windows.c
    with engine.begin() as conn:
        groups = conn.execute(
            select(w.model, w.version, w.route).where(w.dirty.is_(True)).distinct()
        ).all()
    done = 0
    for model, version, route in groups:
        info = catalog.get(model)
        same = (w.model == model, w.version == version, w.route == route, w.dirty.is_(True))
        for _ in range(_MAX_CHUNKS):
            # Each chunk renumbers from the first window still dirty, in its own transaction:
            # a join committed in between has marked what it shifted dirty again.
            with engine.begin() as conn:
                first = conn.execute(select(func.min(w.window_no)).where(*same)).scalar()
                if first is None:
                    break
                # Renumbering moves rows between windows: pick the chunk's numbers after it.
                _renumber(conn, model, version, route, first, info.quality.window_size)
                numbers = (
                    conn.execute(
                        select(w.window_no).where(*same).order_by(w.window_no).limit(REFRESH_CHUNK)
                    )
                    .scalars()
                    .all()
                )
                for number in numbers:
                    _recompute(
                        conn, WindowKey(model, version, route, number), info.task, info.segments
                    )
                done += len(numbers)
    return done


def window_failure_counts(engine: Engine) -> dict[str, int]:
    """Failed windows per model (for the consumer's gauge)."""
    f = window_failures.c
    with reading(engine) as conn:
        found = conn.execute(select(f.model, func.count()).group_by(f.model)).all()
    return {str(model): int(count) for model, count in found}
