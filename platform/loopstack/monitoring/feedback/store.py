"""The read model's database: SQLite embedded (default file in the state dir), PostgreSQL at scale.

It is the feedback consumer's `ConsumerStore`: the read-model tables and the processed-event ids
share one database, so applying an event and marking it processed is one transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.exc import SQLAlchemyError

from loopstack.core.events import ConsumerStore
from loopstack.core.secrets import redact_url
from loopstack.core.settings import Settings
from loopstack.monitoring.feedback.errors import ReadModelUnavailable
from loopstack.monitoring.feedback.tables import metadata, rebuilds

__all__ = ["ReadModel", "read_model_url"]


def read_model_url(settings: Settings) -> str:
    """`feedback.read_model_url`, or `sqlite:///<state dir>/feedback/read_model.db`."""
    if settings.feedback.read_model_url:
        return settings.feedback.read_model_url
    return settings.state_sqlite_url("feedback", "read_model.db")


class ReadModel:
    """The read-model database: an engine with the feedback tables created."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.store = ConsumerStore(url)
            metadata.create_all(self.store.engine)
        except SQLAlchemyError as exc:
            raise ReadModelUnavailable(redact_url(url), str(exc).splitlines()[0]) from exc
        self.engine = self.store.engine

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadModel:
        """The read model these settings name."""
        return cls(read_model_url(settings))

    def reset(self, group: str, rebuilding: datetime | None = None) -> None:
        """Empty every feedback table and forget which events `group` applied (for a rebuild);
        with `rebuilding`, record in the same transaction that a rebuild started then."""
        with self.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(delete(table))
            self.store.forget_group(conn, group)
            if rebuilding is not None:
                conn.execute(insert(rebuilds).values(id=1, started_at=rebuilding))

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.store.close()
