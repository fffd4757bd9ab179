"""Whether the server serves what the traffic records say: the server's readiness and each model's.

The traffic watcher records here which deployed revisions it is still loading and which
versions it could not load; the protocol handlers (REST, gRPC), `loopstack up` and
`loopstack status` read it. The server is ready only once it has read the traffic records and
every version they name (champion, canary or shadow challenger) is loaded and answering: a
probe that trusts it never sends a request the model would refuse with 503. A model whose new
revision is loading or failed keeps answering with its previous split (availability), but it
and the server are not ready: what the record says should be served is not what is served.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from loopstack.serving.traffic import TrafficSplit

__all__ = ["LoadFailure", "Loading", "Readiness", "roles"]


def roles(split: TrafficSplit) -> dict[str, str]:
    """version -> what it is in the split (`champion`, `shadow challenger`, `canary challenger`)."""
    found = {split.champion: "champion"}
    if split.challenger:
        found[split.challenger] = f"{split.mode} challenger"
    return found


@dataclass(frozen=True)
class LoadFailure:
    """A model's current traffic record, some of whose versions did not load."""

    model: str
    revision: int
    roles: dict[str, str]
    """Every version the record names -> its role."""
    failed: dict[str, str]
    """version -> why it did not load."""

    def reason(self, version: str | None = None) -> str:
        """Why the model (or one of its versions) is not ready, and how to fix it."""
        failed = {v: r for v, r in self.failed.items() if version is None or v == version}
        parts = [
            f"v{v} ({self.roles.get(v, 'version')}) failed to load: {r}" for v, r in failed.items()
        ]
        return (
            f"revision {self.revision}: {'; '.join(parts)}; the server retries; fix the version "
            f"or deploy another (`loopstack deploy {self.model} --version V --force`)"
        )


@dataclass(frozen=True)
class Loading:
    """A model's current traffic record, whose versions are being loaded."""

    model: str
    revision: int
    roles: dict[str, str]
    """Every version the record names -> its role."""

    def reason(self, version: str | None = None) -> str:
        """What is loading (all of the record's versions, or the one named)."""
        names = [f"v{v} ({r})" for v, r in self.roles.items() if version is None or v == version]
        return f"revision {self.revision} is loading: {', '.join(names)}"


_STARTING = "starting: the traffic records have not been read yet"


class Readiness:
    """Load states by model, written by the watcher thread and read by request handlers."""

    def __init__(self) -> None:
        self._failures: dict[str, LoadFailure] = {}
        self._loading: dict[str, Loading] = {}
        self._synced = False
        self._lock = threading.Lock()

    def synced(self) -> None:
        """The watcher read the traffic records and marked what it must load."""
        with self._lock:
            self._synced = True

    def loading(self, split: TrafficSplit) -> None:
        """The split's versions are being loaded (a failure of this revision stays the reason
        while it is retried; one of an older revision no longer is)."""
        with self._lock:
            failure = self._failures.get(split.model)
            if failure is not None and failure.revision == split.revision:
                return
            self._failures.pop(split.model, None)
            self._loading[split.model] = Loading(split.model, split.revision, roles(split))

    def failed(self, split: TrafficSplit, failed: dict[str, str]) -> None:
        """Record that the split's `failed` versions (version -> reason) did not load."""
        failure = LoadFailure(split.model, split.revision, roles(split), dict(failed))
        with self._lock:
            self._loading.pop(split.model, None)
            self._failures[split.model] = failure

    def loaded(self, model: str) -> None:
        """The model's current record is served in full (or it is no longer deployed)."""
        with self._lock:
            self._failures.pop(model, None)
            self._loading.pop(model, None)

    def loading_of(self, model: str) -> Loading | None:
        """The model's revision being loaded, if any."""
        with self._lock:
            return self._loading.get(model)

    def not_ready(self, model: str) -> str | None:
        """Why the model's current record is not served in full (loading, failed), or None."""
        with self._lock:
            state: LoadFailure | Loading | None = self._failures.get(model) or self._loading.get(
                model
            )
        return state.reason() if state is not None else None

    def failure(self, model: str) -> LoadFailure | None:
        """The model's load failure, if its current record is not served in full."""
        with self._lock:
            return self._failures.get(model)

    def failures(self) -> list[LoadFailure]:
        """Every model whose current record is not served in full, by name."""
        with self._lock:
            return [self._failures[m] for m in sorted(self._failures)]

    def models(self) -> list[str]:
        """Every model whose current record is not served in full (loading or failed)."""
        with self._lock:
            return sorted({*self._failures, *self._loading})

    def reason(self) -> str | None:
        """Why the server is not ready (None when it is)."""
        with self._lock:
            if not self._synced:
                return _STARTING
            states: dict[str, Loading | LoadFailure] = {**self._loading, **self._failures}
        return " | ".join(f"model {m!r} {states[m].reason()}" for m in sorted(states)) or None
