"""Rate-limited logging of a message that repeats: a loop that retries many times a second
would otherwise bury the rest of the log under copies of one line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LogThrottle"]

_MAX_KEYS = 1024
"""Distinct messages remembered; beyond that, the ones quiet for a whole interval are forgotten."""


class LogThrottle:
    """Logs an identical message (same text once formatted) at most once per `interval_s`.

    The copies in between are counted, and the next one let through says how many were
    suppressed, so the log still tells how often it happened.
    """

    def __init__(
        self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}

    def log(self, logger: logging.Logger, level: int, msg: str, *args: object) -> bool:
        """Log `msg % args` at `level` unless it was logged within the interval; True if logged."""
        text = msg % args if args else msg
        now = self._clock()
        last, suppressed = self._seen.get(text, (None, 0))
        if last is not None and now - last < self.interval_s:
            self._seen[text] = (last, suppressed + 1)
            return False
        if len(self._seen) >= _MAX_KEYS:
            self._forget(now)
        self._seen[text] = (now, 0)
        if suppressed:
            logger.log(level, "%s (%d identical messages suppressed)", text, suppressed)
        else:
            logger.log(level, "%s", text)
        return True

    def warning(self, logger: logging.Logger, msg: str, *args: object) -> bool:
        """`log` at WARNING."""
        return self.log(logger, logging.WARNING, msg, *args)

    def _forget(self, now: float) -> None:
        quiet = [k for k, (last, _) in self._seen.items() if now - last >= self.interval_s]
        for key in quiet or list(self._seen):
            del self._seen[key]
