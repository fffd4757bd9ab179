"""The loop's database: its state tables next to its processed-event ids (one transaction)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from loopstack.core.audit import metadata as audit_metadata
from loopstack.core.audit.tables import naive_utc
from loopstack.core.errors import Unavailable
from loopstack.core.events import ConsumerStore, reading
from loopstack.core.settings import Settings
from loopstack.loop.tables import metadata, model_state

__all__ = ["LoopStore", "LoopStoreUnavailable", "loop_store_url", "naive"]


class LoopStoreUnavailable(Unavailable):
    """The loop's database cannot be opened; check `loop.store_url` (LOOPSTACK_LOOP__STORE_URL)."""


def loop_store_url(settings: Settings) -> str:
    """`loop.store_url`, or `sqlite:///<state dir>/loop/loop.db`."""
    if settings.loop.store_url:
        return settings.loop.store_url
    return settings.state_sqlite_url("loop", "loop.db")


naive = naive_utc
"""A naive UTC time, as the tables store it."""


class LoopStore:
    """Engine of the loop tables, plus the per-model state row."""

    def __init__(self, url: str) -> None:
        try:
            self.store = ConsumerStore(url)
            metadata.create_all(self.store.engine)
            audit_metadata.create_all(self.store.engine)  # the controller keeps the audit trail too
        except SQLAlchemyError as exc:
            raise LoopStoreUnavailable(
                f"loop store unavailable: {str(exc).splitlines()[0]}; check LOOPSTACK_LOOP__STORE_URL"
            ) from exc
        self.engine = self.store.engine

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopStore:
        """The store these settings name."""
        return cls(loop_store_url(settings))

    def state(self, conn: Connection, model: str) -> dict[str, Any]:
        """The model's loop state, locked until the transaction ends (created idle on first use)."""
        query = select(model_state).where(model_state.c.model == model).with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            values = {"model": model, "phase": "idle", "step": 0,
                      "updated_at": naive(datetime.now(UTC))}  # fmt: skip
            conn.execute(insert(model_state).values(**values))
            row = conn.execute(query).mappings().one()
        return dict(row)

    def save(self, conn: Connection, model: str, **values: Any) -> None:
        """Update the model's loop state."""
        conn.execute(
            update(model_state)
            .where(model_state.c.model == model)
            .values(**values, updated_at=naive(datetime.now(UTC)))
        )

    def states(self) -> list[dict[str, Any]]:
        """Every model's loop state."""
        with reading(self.engine) as conn:
            return [dict(r) for r in conn.execute(select(model_state)).mappings()]

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.store.close()
