"""Follow the TrafficStore: load the versions of a new split revision, then swap it in.

A daemon thread polls the revisions (one indexed SELECT, every `poll_s`), off the request path.
Versions are downloaded and loaded before the swap, so requests keep the old split until the
new one is complete; a revision whose versions fail to load leaves the old split serving, and
the server not ready (`Readiness`) until they load or the model is deployed otherwise.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from loopstack.serving.loader import LoadedVersion
from loopstack.serving.readiness import Readiness, roles
from loopstack.serving.routing import ServedSplit
from loopstack.serving.runtime import ServingRuntime
from loopstack.serving.traffic import TrafficSplit, TrafficStore

__all__ = ["SplitWatcher"]

log = logging.getLogger(__name__)
_RETRY_S = 10.0

Loader = Callable[[str, str], LoadedVersion]
"""(model, version) -> loaded version."""


class SplitWatcher:
    """Keeps a runtime's served splits equal to the TrafficStore's current revisions."""

    def __init__(
        self,
        store: TrafficStore,
        runtime: ServingRuntime,
        loader: Loader,
        poll_s: float = 0.5,
        models: set[str] | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.loader = loader
        self.poll_s = poll_s
        self.only = models
        self.readiness = readiness or Readiness()
        self._applied: dict[str, int] = {}
        self._failed: dict[tuple[str, int], float] = {}
        self._cache: dict[tuple[str, str], LoadedVersion] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None

    def revisions(self) -> dict[str, int]:
        """model -> current revision: the cheap query polled every tick."""
        if self._db is None:
            # One connection, used by the watcher thread only; a read sees the last commit (WAL).
            self._db = sqlite3.connect(Path(self.store.path), timeout=5, check_same_thread=False)
        return dict(self._db.execute("SELECT model, revision FROM traffic").fetchall())

    def sync(self) -> None:
        """Apply every split whose revision changed since the last sync."""
        deployed = self.revisions()
        self._forget_removed(deployed)
        due: list[TrafficSplit] = []
        for model, revision in deployed.items():
            if self.only is not None and model not in self.only:
                continue
            if self._applied.get(model) == revision:
                continue
            retry_at = self._failed.get((model, revision))
            if retry_at is not None and time.monotonic() < retry_at:
                continue
            split = self.store.get(model)
            if split is not None:
                # Every changed record is marked before any load starts: while one model loads,
                # the others it waits behind must not look ready either.
                self.readiness.loading(split)
                due.append(split)
        self.readiness.synced()
        for split in due:
            self._apply(split)

    def _apply(self, split: TrafficSplit) -> None:
        if not self.runtime.ready(split.model):
            self.runtime.set_not_ready(split.model, f"loading revision {split.revision}")
        loaded, failed = self._load_all(split)
        if failed:
            log.error("%s revision %d: cannot load %s", split.model, split.revision, failed)
            self._failed[(split.model, split.revision)] = time.monotonic() + _RETRY_S
            self.readiness.failed(split, failed)
            failure = self.readiness.failure(split.model)
            detail = failure.reason() if failure is not None else "failed to load"
            # With no split yet, requests are refused with the reason; an older split keeps
            # answering (the server is not ready meanwhile).
            self.runtime.set_not_ready(split.model, detail)
            self._record(split.model, split.revision, detail)
            return
        champion = loaded[split.champion]
        challenger = loaded[split.challenger] if split.challenger else None
        self.runtime.warm(split.model)
        self.runtime.set_split(ServedSplit(split, champion, challenger))
        self.readiness.loaded(split.model)
        self._record(split.model, split.revision, "")
        self._applied[split.model] = split.revision
        self._failed = {k: v for k, v in self._failed.items() if k[0] != split.model}
        wanted = {(split.model, split.champion), (split.model, split.challenger or "")}
        # Versions no split uses any more are dropped, so memory follows the splits.
        self._cache = {k: v for k, v in self._cache.items() if k[0] != split.model or k in wanted}
        log.info(
            "%s: serving revision %d (%s, champion v%s%s)",
            split.model,
            split.revision,
            split.mode,
            split.champion,
            f", challenger v{split.challenger}" if split.challenger else "",
        )

    def _load_all(self, split: TrafficSplit) -> tuple[dict[str, LoadedVersion], dict[str, str]]:
        """Every version of the split: loaded ones, and why each other did not load."""
        loaded: dict[str, LoadedVersion] = {}
        failed: dict[str, str] = {}
        for version in roles(split):
            try:
                loaded[version] = self._load(split.model, version)
            except Exception as exc:
                failed[version] = str(exc) or type(exc).__name__
        return loaded, failed

    def _record(self, model: str, revision: int, detail: str) -> None:
        """Tell the management API (`loopstack traffic`) what this server made of the split."""
        try:
            self.store.record_load(model, revision, detail)
        except sqlite3.Error as exc:  # serving goes on; the record catches up on the next change
            log.warning("%s: cannot record the load state: %s", model, exc)

    def _forget_removed(self, deployed: dict[str, int]) -> None:
        """A model no longer deployed is no longer a reason for the server to be unready."""
        for model in self.readiness.models():
            if model not in deployed:
                self.readiness.loaded(model)
                self._applied.pop(model, None)

    def _load(self, model: str, version: str) -> LoadedVersion:
        key = (model, version)
        if key not in self._cache:
            self._cache[key] = self.loader(model, version)
        return self._cache[key]

    def start(self) -> None:
        """Sync now, then keep polling on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="split-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # a transient SQLite or MLflow error: try again next tick
                log.exception("traffic watcher: sync failed")
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
