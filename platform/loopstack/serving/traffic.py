"""Traffic splits: which versions of a model answer, and how requests are shared between them."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loopstack.core.errors import InvalidInput

__all__ = ["LoadState", "TrafficSplit", "TrafficStore"]


class TrafficSplit(BaseModel):
    """How one model's requests are shared between its champion and a challenger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    champion: str
    """Version that answers every request not routed to the challenger."""
    challenger: str | None = None
    """Version under test, if any."""
    mode: Literal["champion", "canary", "shadow"] = "champion"
    """`canary`: the challenger answers `canary_percent`% of requests; `shadow`: it scores a
    mirror of every request, off the response path, and is never returned."""
    canary_percent: int = Field(0, ge=0, le=100)
    sticky: bool = False
    """Route by a hash of the entity key, so an entity always meets the same version."""
    revision: int = 0
    """Increases with every change; servers compare it to pick changes up without a restart."""
    updated_at: float = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> TrafficSplit:
        if self.mode != "champion" and not self.challenger:
            raise ValueError(f"mode {self.mode!r} needs a challenger version")
        if self.mode == "canary" and not 0 < self.canary_percent <= 100:
            raise ValueError("a canary needs canary_percent between 1 and 100")
        if self.mode != "canary" and self.canary_percent:
            raise ValueError("canary_percent is only meaningful with mode 'canary'")
        return self


_SCHEMA = """
CREATE TABLE IF NOT EXISTS traffic (
    model TEXT PRIMARY KEY, revision INTEGER NOT NULL, split TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS traffic_history (
    model TEXT NOT NULL, revision INTEGER NOT NULL, split TEXT NOT NULL,
    PRIMARY KEY (model, revision));
CREATE TABLE IF NOT EXISTS load_state (
    model TEXT PRIMARY KEY, revision INTEGER NOT NULL, detail TEXT NOT NULL, at REAL NOT NULL);
"""


class LoadState(BaseModel):
    """What the inference server last made of a model's split: `detail` is empty once the
    revision is served in full, else why it is not (a version failed to load)."""

    model_config = ConfigDict(frozen=True)

    revision: int
    detail: str


class TrafficStore:
    """Durable splits of the embedded backend (SQLite, WAL: servers read while the API writes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def set(self, split: TrafficSplit) -> TrafficSplit:
        """Store a new split for its model, one revision after the current one."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT revision FROM traffic WHERE model = ?", (split.model,)
            ).fetchone()
            stored = split.model_copy(
                update={"revision": (row[0] if row else 0) + 1, "updated_at": time.time()}
            )
            payload = stored.model_dump_json()
            db.execute(
                "INSERT OR REPLACE INTO traffic (model, revision, split) VALUES (?, ?, ?)",
                (stored.model, stored.revision, payload),
            )
            db.execute(
                "INSERT INTO traffic_history (model, revision, split) VALUES (?, ?, ?)",
                (stored.model, stored.revision, payload),
            )
            db.execute("COMMIT")
            return stored
        finally:
            db.close()

    def get(self, model: str) -> TrafficSplit | None:
        """Current split of a model, or None if it was never deployed."""
        with self._connect() as db:
            row = db.execute("SELECT split FROM traffic WHERE model = ?", (model,)).fetchone()
        return TrafficSplit.model_validate(json.loads(row[0])) if row else None

    def all(self) -> list[TrafficSplit]:
        """Current splits of every deployed model."""
        with self._connect() as db:
            rows = db.execute("SELECT split FROM traffic ORDER BY model").fetchall()
        return [TrafficSplit.model_validate(json.loads(r[0])) for r in rows]

    def remove(self, model: str) -> bool:
        """Withdraw a model's split (its history stays); True if it had one. Servers stop
        counting its versions in their readiness; one already answering with it goes on until
        it restarts (there is no undeploy: deploy another version to change what answers)."""
        with self._connect() as db:
            gone = db.execute("DELETE FROM traffic WHERE model = ?", (model,)).rowcount
            db.execute("DELETE FROM load_state WHERE model = ?", (model,))
        return bool(gone)

    def record_load(self, model: str, revision: int, detail: str = "") -> None:
        """Record what the inference server made of a revision (`detail`: why it is not served)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO load_state (model, revision, detail, at) "
                "VALUES (?, ?, ?, ?)",
                (model, revision, detail, time.time()),
            )

    def load_state(self, model: str) -> LoadState | None:
        """What the inference server last made of the model's split, or None (never loaded)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT revision, detail FROM load_state WHERE model = ?", (model,)
            ).fetchone()
        return LoadState(revision=row[0], detail=row[1]) if row else None

    def history(self, model: str) -> list[TrafficSplit]:
        """Every split a model has had, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT split FROM traffic_history WHERE model = ? ORDER BY revision", (model,)
            ).fetchall()
        if not rows:
            raise InvalidInput(
                f"model {model!r} was never deployed; deploy it with `loopstack deploy`"
            )
        return [TrafficSplit.model_validate(json.loads(r[0])) for r in rows]
