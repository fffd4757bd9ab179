"""Which version answers a request: champion, canary share (optionally sticky), shadow mirror."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Any

from loopstack.serving.loader import LoadedVersion
from loopstack.serving.traffic import TrafficSplit

__all__ = ["Route", "ServedSplit", "sticky_bucket"]


def sticky_bucket(model: str, entity_key: Any) -> int:
    """A stable bucket 0..99 for an entity of a model (same on every server and restart)."""
    return zlib.crc32(f"{model}\x00{entity_key}".encode()) % 100


@dataclass(frozen=True)
class Route:
    """The decision for one request: who answers, under which route, and who shadows it."""

    version: LoadedVersion
    route: str
    shadow: LoadedVersion | None = None


@dataclass(frozen=True)
class ServedSplit:
    """A traffic split whose versions are loaded; swapped atomically when a new revision lands."""

    split: TrafficSplit
    champion: LoadedVersion
    challenger: LoadedVersion | None

    def versions(self) -> dict[str, LoadedVersion]:
        """Loaded versions by number."""
        out = {self.champion.version: self.champion}
        if self.challenger is not None:
            out[self.challenger.version] = self.challenger
        return out

    def choose(self, entity_key: Any = None, rng: random.Random | None = None) -> Route:
        """Route one request; sticky canaries hash the entity key (random when there is none)."""
        split = self.split
        if split.mode == "canary" and self.challenger is not None:
            if split.sticky and entity_key is not None:
                bucket = sticky_bucket(split.model, entity_key)
            else:
                bucket = int((rng or random).random() * 100)
            if bucket < split.canary_percent:
                return Route(self.challenger, "canary")
            return Route(self.champion, "champion")
        if split.mode == "shadow" and self.challenger is not None:
            return Route(self.champion, "champion", shadow=self.challenger)
        return Route(self.champion, "champion")

    def pinned(self, version: str) -> Route | None:
        """Route to an explicitly requested version, if the split serves it."""
        if version == self.champion.version:
            return Route(self.champion, "champion")
        if self.challenger is not None and version == self.challenger.version:
            return Route(self.challenger, "canary" if self.split.mode == "canary" else "shadow")
        return None
