"""Which deployed versions failed to load: the server's readiness and each model's.

The traffic watcher records here what it could not load; the protocol handlers (REST, gRPC) and
`loopstack status` read it. A model whose new revision fails keeps answering with its previous
split (availability), but the server is not ready: what the traffic record says should be
served is not what is served, and a probe or an operator must see that, with the reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from loopstack.serving.traffic import TrafficSplit

__all__ = ["LoadFailure", "Readiness", "roles"]


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


class Readiness:
    """Load failures by model, written by the watcher thread and read by request handlers."""

    def __init__(self) -> None:
        self._failures: dict[str, LoadFailure] = {}
        self._lock = threading.Lock()

    def failed(self, split: TrafficSplit, failed: dict[str, str]) -> None:
        """Record that the split's `failed` versions (version -> reason) did not load."""
        failure = LoadFailure(split.model, split.revision, roles(split), dict(failed))
        with self._lock:
            self._failures[split.model] = failure

    def loaded(self, model: str) -> None:
        """The model's current record is served in full (or it is no longer deployed)."""
        with self._lock:
            self._failures.pop(model, None)

    def failure(self, model: str) -> LoadFailure | None:
        """The model's load failure, if its current record is not served in full."""
        with self._lock:
            return self._failures.get(model)

    def failures(self) -> list[LoadFailure]:
        """Every model whose current record is not served in full, by name."""
        with self._lock:
            return [self._failures[m] for m in sorted(self._failures)]

    def reason(self) -> str | None:
        """Why the server is not ready (None when it is)."""
        failures = self.failures()
        return " | ".join(f"model {f.model!r} {f.reason()}" for f in failures) or None
