"""One clock per model: the event time of the model's own traffic, in the order it arrives.

The controller consumes `prediction.v1` and, per model and consumed batch, takes the latest
request time of that batch. The clock moves forward to it, ignores small disorder (concurrent
clients, partitions), and *rewinds* when the batch is more than `REWIND` older than the clock:
the model's traffic jumped back in time (a replay of past days after live requests). Traffic of
one model never moves another's clock. A rewind restarts the current phase's clock (a shadow or
canary step then counts the requests of the new timeline) and is kept with its wall-clock time,
so the model-ops metrics can be computed on the current timeline only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, insert, select, update

from loopstack.core.events.envelope import Event
from loopstack.core.events.store import reading
from loopstack.loop.store import naive
from loopstack.loop.tables import clocks, model_state

__all__ = ["REWIND", "ModelClocks", "Timeline", "advance", "latest_request_times"]

REWIND = timedelta(days=1)
"""How far back a model's traffic must jump for its clock to follow (a new timeline). Less is
disorder: concurrent clients and the log's partitions deliver hours out of order."""


def advance(current: datetime | None, latest: datetime) -> datetime:
    """The clock after a batch whose latest event time is `latest`."""
    if current is None or latest > current or latest < current - REWIND:
        return latest
    return current


def _parse(value: str) -> datetime:
    return naive(datetime.fromisoformat(value.replace("Z", "+00:00")))


def latest_request_times(events: Sequence[Event]) -> dict[str, datetime]:
    """Per model, the latest request time among the `prediction.v1` events of a batch."""
    latest: dict[str, datetime] = {}
    for event in events:
        if event.name != "prediction.v1":
            continue
        model = str(event.data["model"])
        raw = event.data.get("request_time")
        at = _parse(raw) if isinstance(raw, str) else naive(event.time)
        if model not in latest or at > latest[model]:
            latest[model] = at
    return latest


@dataclass(frozen=True)
class Timeline:
    """A model's current timeline: model time now, and where (and when) it last rewound."""

    now: datetime
    started_at: datetime | None
    """Model time the clock rewound to last (None: it never rewound)."""
    rewound_at: datetime | None
    """Wall-clock time of that rewind."""

    def on(self, when: datetime) -> datetime:
        """`when` if it is on this timeline, else now: an alert whose window ends after the
        clock, or began before the rewind (live requests before a replay), is decided now."""
        if when > self.now + REWIND or (self.started_at is not None and when < self.started_at):
            return self.now
        return when


class ModelClocks:
    """Per-model clocks in the loop store (`loop_clocks`)."""

    def __init__(self, engine: Engine, fallback: Callable[[str], datetime | None]) -> None:
        self.engine = engine
        self.fallback = fallback
        """Model time before any traffic (the latest decision's), else the wall clock."""

    def observe(self, conn: Connection, model: str, latest: datetime) -> bool:
        """Apply one batch's latest event time of `model`; True when the clock rewound."""
        row = conn.execute(select(clocks).where(clocks.c.model == model)).mappings().first()
        wall = naive(datetime.now(UTC))
        if row is None:
            conn.execute(insert(clocks).values(model=model, at=latest, updated_at=wall))
            return False
        moved = advance(row["at"], latest)
        if moved == row["at"]:
            return False
        rewound = moved < row["at"]
        values = {"at": moved, "updated_at": wall}
        if rewound:
            values |= {"started_at": moved, "rewound_at": wall}
            # A phase that started "later" than the new clock would never see its requests.
            conn.execute(
                update(model_state)
                .where(model_state.c.model == model, model_state.c.phase_started_at > moved)
                .values(phase_started_at=moved)
            )
        conn.execute(update(clocks).where(clocks.c.model == model).values(**values))
        return rewound

    def timeline(self, model: str) -> Timeline:
        """The model's clock (before any traffic: the fallback, else the wall clock)."""
        with reading(self.engine) as conn:
            row = conn.execute(select(clocks).where(clocks.c.model == model)).mappings().first()
        if row is not None:
            return Timeline(row["at"], row["started_at"], row["rewound_at"])
        now = self.fallback(model) or naive(datetime.now(UTC))
        return Timeline(now, None, None)

    def now(self, model: str) -> datetime:
        """Model time of `model`."""
        return self.timeline(model).now
