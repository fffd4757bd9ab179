"""Run a process's step until it is stopped, waiting out transient errors with back-off.

The consumers (drift, feedback) and the loop controller share this loop: a step that fails on
an error a retry can cure (`core.errors.is_transient`: a locked or read-only event log, a lost
broker or database) is retried after 0.5 s, doubling up to 30 s, with the warning rate-limited;
an error a retry cannot cure stops the process with its cause, since retrying would only spin
(the supervisor then restarts it, and the operator sees why in the log).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from loopstack.core.errors import is_transient
from loopstack.core.logthrottle import LogThrottle

__all__ = ["BACKOFF_MAX_S", "BACKOFF_MIN_S", "Backoff", "run_with_backoff"]

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
"""Wait between retries while a step fails: doubles from the minimum up to this."""


class Backoff:
    """The next wait after a failure: 0.5 s, 1 s, 2 s ... at most 30 s; `reset` on success."""

    def __init__(self, first_s: float = BACKOFF_MIN_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.delay = 0.0

    def failed(self) -> float:
        """Count a failure; return how long to wait before the next attempt."""
        self.delay = min(self.max_s, max(self.first_s, self.delay * 2))
        return self.delay

    def reset(self) -> None:
        """A step succeeded: the next failure waits the minimum again."""
        self.delay = 0.0


def run_with_backoff(
    step: Callable[[], object],
    stop: threading.Event,
    *,
    name: str,
    logger: logging.Logger,
    backoff: Backoff | None = None,
    throttle: LogThrottle | None = None,
) -> None:
    """Call `step` until `stop` is set.

    Args:
        step: one unit of work (a batch and its housekeeping); it must leave nothing half done
            when it raises (a consumer's batch is rewound and read again).
        stop: set to end the loop (SIGTERM).
        name: the process as the log names it ("feedback consumer").
        logger: where the warnings go (identical ones at most every 30 s).

    Raises:
        Exception: the first error a retry cannot cure, after logging it as critical.
    """
    backoff = backoff or Backoff()
    throttle = throttle or LogThrottle()
    while not stop.is_set():
        try:
            step()
        except Exception as exc:
            if not is_transient(exc):
                logger.critical(
                    "%s stops: %s: %s; a retry cannot cure this, fix the cause and restart it "
                    "(the batch was not committed and is read again)",
                    name,
                    type(exc).__name__,
                    exc,
                )
                raise
            throttle.warning(
                logger, "%s: %s: %s; retrying with back-off", name, type(exc).__name__, exc
            )
            stop.wait(backoff.failed())
        else:
            backoff.reset()
