"""The drift consumer's store: its tables and processed-event ids in one SQLAlchemy database."""

from __future__ import annotations

from pathlib import Path

from loopstack.core.events import ConsumerStore
from loopstack.core.settings import Settings
from loopstack.monitoring.drift.tables import metadata

__all__ = ["DriftStore", "drift_store_url"]


def drift_store_url(settings: Settings) -> str:
    """`drift.store_url`, or `sqlite:///<state dir>/drift-consumer/drift.db`."""
    if settings.drift.store_url:
        return settings.drift.store_url
    return settings.state_sqlite_url("drift-consumer", "drift.db")


class DriftStore:
    """The drift tables next to the `ConsumerStore`'s processed ids (one transaction for both)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.store = ConsumerStore(url)
        metadata.create_all(self.store.engine)
        self.engine = self.store.engine

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftStore:
        """The store these settings name."""
        return cls(drift_store_url(settings))

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.store.close()
