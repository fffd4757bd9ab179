"""The consumer's handler: puts the rows of `prediction.v1` events into per-version windows.

A window of a model version closes when it holds the spec's `drift.window_size` rows (at most
the setting `drift.max_window_rows`), when a prediction arrives `drift.window_seconds` (event
time) after the window's first one, or, without new predictions, that long after it opened
(wall clock; `close_idle`). Everything is written on
the connection of the consumer's transaction, so the rows, the window state and the event's
processed mark commit together. Shadow predictions are left out: they mirror champion traffic.
Rows are stored bounded (`bounds.Bounds.row`: scalars only, long strings as digests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.engine import Connection

from loopstack.core.events import Event
from loopstack.core.events.schema import full_type
from loopstack.core.modelspec import DriftSpec
from loopstack.monitoring.drift.bounds import Bounds
from loopstack.monitoring.drift.gauges import DriftGauges
from loopstack.monitoring.drift.rows import event_rows
from loopstack.monitoring.drift.tables import drift_rows, drift_windows

__all__ = ["SpecLookup", "WindowAssigner", "close_idle", "parse_time", "to_iso", "utcnow"]

log = logging.getLogger(__name__)

SpecLookup = Callable[[str], DriftSpec]
"""The drift spec of a model (defaults for a model without a spec)."""

_PREDICTION = full_type("prediction.v1")


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (how the store keeps times)."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse_time(value: str) -> datetime:
    """An RFC 3339 string as a naive UTC datetime."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def to_iso(moment: datetime) -> str:
    """A naive UTC datetime as RFC 3339 with `Z`."""
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Open:
    number: int
    start: datetime
    end: datetime
    size: int


class WindowAssigner:
    """The `ConsumerRunner` handler of the drift consumer (see the module docstring)."""

    def __init__(
        self,
        specs: SpecLookup,
        gauges: DriftGauges,
        *,
        unwatched: set[tuple[str, str]] | None = None,
        clock: Callable[[], datetime] = utcnow,
        bounds: Bounds | None = None,
    ) -> None:
        self._specs = specs
        self._gauges = gauges
        self.bounds = bounds or Bounds()
        self.unwatched = unwatched if unwatched is not None else set()
        """Versions known to have no detectors: their rows are counted, not kept."""
        self._clock = clock

    def __call__(self, event: Event, conn: Connection) -> None:
        """Add the event's rows to its version's open window (closing windows as they fill)."""
        if event.type != _PREDICTION:
            return
        data = event.data
        model, version = str(data["model"]), str(data["version"])
        if data.get("route") == "shadow":
            self._gauges.skipped.labels(model, "shadow").inc()
            return
        rows = event_rows(data)
        if not rows:
            self._gauges.skipped.labels(model, "no_rows").inc()
            return
        bounded = [self.bounds.row(row) for row in rows]
        stored = [row for row in bounded if row is not None]
        if len(stored) < len(bounded):
            self._gauges.skipped.labels(model, "too_wide").inc(len(bounded) - len(stored))
        if not stored:
            return
        if (model, version) in self.unwatched:
            self._gauges.no_detectors.labels(model, version).inc(len(stored))
            return
        self.add(conn, model, version, event.id, parse_time(data["request_time"]), stored)

    def add(
        self,
        conn: Connection,
        model: str,
        version: str,
        event_id: str,
        at: datetime,
        rows: Sequence[str],
    ) -> None:
        """Append rows predicted at `at` (each its stored JSON, `Bounds.row`) to the version's
        windows."""
        spec = self._specs(model)
        span = timedelta(seconds=spec.window_seconds)
        size = min(spec.window_size, self.bounds.max_window_rows)
        window = _open_window(conn, model, version)
        if window is not None and at >= window.start + span:
            _set_state(conn, model, version, window.number, "closed")
            window = None
        for row_no, row in enumerate(rows):
            if window is None:
                window = self._new_window(conn, model, version, at)
            conn.execute(
                insert(drift_rows).values(
                    model=model,
                    version=version,
                    window_no=window.number,
                    event_id=event_id,
                    row_no=row_no,
                    data=row,
                )
            )
            window.size += 1
            window.start, window.end = min(window.start, at), max(window.end, at)
            full = window.size >= size
            conn.execute(
                update(drift_windows)
                .where(*_key(model, version, window.number))
                .values(
                    size=window.size,
                    start_time=window.start,
                    end_time=window.end,
                    state="closed" if full else "open",
                )
            )
            if full:
                window = None

    def _new_window(self, conn: Connection, model: str, version: str, at: datetime) -> _Open:
        last = conn.execute(
            select(func.max(drift_windows.c.window_no)).where(
                drift_windows.c.model == model, drift_windows.c.version == version
            )
        ).scalar()
        number = 0 if last is None else int(last) + 1
        conn.execute(
            insert(drift_windows).values(
                model=model,
                version=version,
                window_no=number,
                state="open",
                start_time=at,
                end_time=at,
                size=0,
                opened_at=self._clock(),
            )
        )
        return _Open(number, at, at, 0)


def _key(model: str, version: str, number: int) -> list[Any]:
    w = drift_windows.c
    return [w.model == model, w.version == version, w.window_no == number]


def _open_window(conn: Connection, model: str, version: str) -> _Open | None:
    w = drift_windows.c
    row = conn.execute(
        select(w.window_no, w.start_time, w.end_time, w.size).where(
            w.model == model, w.version == version, w.state == "open"
        )
    ).first()
    return None if row is None else _Open(int(row[0]), row[1], row[2], int(row[3]))


def _set_state(conn: Connection, model: str, version: str, number: int, state: str) -> None:
    conn.execute(update(drift_windows).where(*_key(model, version, number)).values(state=state))


def close_idle(engine: Engine, specs: SpecLookup, now: datetime) -> int:
    """Close open windows that opened `window_seconds` ago (wall clock); return how many."""
    w = drift_windows.c
    closed = 0
    with engine.begin() as conn:
        heads = conn.execute(
            select(w.model, w.version, w.window_no, w.opened_at).where(w.state == "open")
        ).all()
        for model, version, number, opened_at in heads:
            if opened_at + timedelta(seconds=specs(model).window_seconds) <= now:
                conn.execute(
                    update(drift_windows)
                    .where(and_(*_key(model, version, number)), w.state == "open")
                    .values(state="closed")
                )
                closed += 1
    return closed
