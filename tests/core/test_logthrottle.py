"""A repeated identical message is logged once per interval, then with the count it hid."""

from __future__ import annotations

import logging

import pytest
from loopstack.core.logthrottle import LogThrottle

log = logging.getLogger("tests.logthrottle")


def test_identical_messages_are_suppressed_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = LogThrottle(interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(19):
            throttle.warning(log, "window %d waits: %s", 3, "server down")
            now[0] += 0.05
        throttle.warning(log, "window %d waits: %s", 4, "server down")  # another message
        now[0] = 10.0
        throttle.warning(log, "window %d waits: %s", 3, "server down")
    assert caplog.messages == [
        "window 3 waits: server down",
        "window 4 waits: server down",
        "window 3 waits: server down (18 identical messages suppressed)",
    ]
