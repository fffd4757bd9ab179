"""A process's loop run while another process holds the SQLite event log's write lock: the
scenario the feedback consumer, drift consumer and loop controller share in their log-error
tests (the lock fails their offset commits until it goes)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from loopstack.core.events import EventLog

LOCKING_EVENTS: dict[str, Any] = {
    "backend": "sqlite",
    "partitions": 1,
    "sqlite_busy_timeout_ms": 100,
    "group_session_timeout_ms": 10_000,
}
"""`events` settings of an SQLite log that gives up on a lock after 100 ms, so a held lock fails
writes fast."""


def run_through_held_lock(
    log: EventLog,
    run: Callable[..., None],
    done: Callable[[], bool],
    caplog: pytest.LogCaptureFixture,
    logger: str,
) -> list[logging.LogRecord]:
    """Run `run(stop, poll_timeout=0.1)` in a thread with the log's write lock held for 2 s,
    then until `done()` (at most 20 s); assert it waited the lock out and stopped cleanly.

    Returns:
        The back-off warnings `logger` wrote meanwhile.
    """
    blocker = sqlite3.connect(log.path, isolation_level=None)  # type: ignore[attr-defined]
    blocker.execute("BEGIN IMMEDIATE")
    stop = threading.Event()
    failed: list[BaseException] = []

    def loop() -> None:
        try:
            run(stop, poll_timeout=0.1)
        except BaseException as exc:
            failed.append(exc)

    with caplog.at_level(logging.WARNING, logger=logger):
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        time.sleep(2.0)
        assert thread.is_alive(), failed
        blocker.execute("ROLLBACK")
        blocker.close()
        deadline = time.monotonic() + 20
        while not done() and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and failed == []
    return [r for r in caplog.records if "retrying with back-off" in r.getMessage()]
