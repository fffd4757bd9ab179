"""The shared run loop of the consumers and the loop controller: transient errors waited out
with doubling waits (0.5 s up to 30 s, reset after a success), deterministic ones stop it."""

from __future__ import annotations

import logging
import threading

import pytest
from loopstack.core.backoff import Backoff, run_with_backoff
from loopstack.core.errors import Unavailable


def test_waits_double_up_to_the_cap_and_reset_after_a_success() -> None:
    backoff = Backoff()
    assert [backoff.failed() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    backoff.reset()
    assert backoff.failed() == 0.5


class _Recorder(threading.Event):
    """A stop event that records the waits instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        return self.is_set()


def test_transient_errors_are_retried_and_a_success_resets_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = _Recorder()
    script = iter(
        [Unavailable("log locked"), OSError("read-only"), None, Unavailable("log locked"), "end"]
    )

    def step() -> None:
        item = next(script)
        if isinstance(item, Exception):
            raise item
        if item == "end":
            stop.set()

    logger = logging.getLogger("tests.backoff")
    with caplog.at_level(logging.WARNING, logger="tests.backoff"):
        run_with_backoff(step, stop, name="test consumer", logger=logger)
    assert stop.waits == [0.5, 1.0, 0.5]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "test consumer: Unavailable: log locked; retrying with back-off"
    assert len(lines) == 2  # the second "log locked" is within the throttle's interval


def test_an_error_a_retry_cannot_cure_stops_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    def step() -> None:
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        run_with_backoff(step, threading.Event(), name="test consumer", logger=logging.getLogger())
    assert "test consumer stops: ValueError: bad data; a retry cannot cure this" in caplog.text
