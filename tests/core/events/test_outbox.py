"""Publishing never waits on the log: outages, a killed publisher, a full outbox."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from loopstack.core.events import Event, EventLog, EventMetrics, Publisher
from loopstack.core.events.errors import OutboxLocked, PublishQueueFull
from loopstack.core.settings import Settings

from tests.core.events.helpers import outcome
from tests.core.events.test_consumer import PROJECT_DIR, child_env


@contextmanager
def outage(settings: Settings, request: pytest.FixtureRequest) -> Iterator[None]:
    """Make the log unreachable: SIGSTOP the broker, or hold an exclusive lock on the SQLite file."""
    if settings.events.backend == "kafka":
        pid = request.getfixturevalue("tansu").pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
        return
    conn = sqlite3.connect(settings.state_path / "events" / "events.db", timeout=0)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


def read_values(log: EventLog, topic: str) -> dict[str, list[int]]:
    """Outcome values per partition key, first occurrence only (redeliveries are allowed)."""
    out: dict[str, list[int]] = {}
    seen: set[str] = set()
    for partition in log.watermarks(topic):
        for record in log.read(topic, partition, 0, 1_000_000):
            event = Event.from_json(record.value)
            if event.id not in seen:
                seen.add(event.id)
                out.setdefault(record.key or "", []).append(event.data["value"])
    return out


def check_all_in_order(log: EventLog, topic: str, count: int) -> None:
    per_key = read_values(log, topic)
    assert sorted(v for vs in per_key.values() for v in vs) == list(range(count))
    assert all(vs == sorted(vs) for vs in per_key.values())


def test_publishing_keeps_returning_while_the_log_is_unreachable(
    settings_for, topic: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from loopstack.core.events import open_event_log

    settings = settings_for(sqlite_busy_timeout_ms=100)
    log = open_event_log(settings)
    publisher = Publisher(log, tmp_path / "outbox" / "p.db", batch_size=100)
    try:
        publisher.publish(topic, [outcome(v, key=f"k{v % 13}") for v in range(100)])
        assert publisher.flush(20) == 0
        with outage(settings, request):
            for start in range(100, 2000, 100):
                began = time.monotonic()
                publisher.publish(
                    topic, [outcome(v, key=f"k{v % 13}") for v in range(start, start + 100)]
                )
                assert time.monotonic() - began < 0.5
            time.sleep(1.0)
            assert publisher.depth > 0
        assert publisher.flush(60) == 0
        check_all_in_order(log, topic, 2000)
    finally:
        publisher.close()
        log.close()


def test_a_publisher_killed_during_an_outage_loses_nothing(
    settings_for, topic: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from loopstack.core.events import open_event_log

    settings = settings_for(sqlite_busy_timeout_ms=100)
    log = open_event_log(settings)
    log.append([])  # the log file exists before the outage
    env = child_env(settings, EV_TOPIC=topic, EV_OUTBOX="killed", EV_START="0", EV_COUNT="1500")
    try:
        with outage(settings, request):
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.core.events.publisher_child"],
                cwd=PROJECT_DIR,
                env={**env, "EV_MODE": "publish"},
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            try:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == b"published"
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        drain = subprocess.run(
            [sys.executable, "-m", "tests.core.events.publisher_child"],
            cwd=PROJECT_DIR,
            env={**env, "EV_MODE": "drain"},
            capture_output=True,
            timeout=120,
            check=True,
        )
        assert drain.stdout.strip() == b"remaining 0"
        check_all_in_order(log, topic, 1500)
    finally:
        log.close()


def test_a_full_outbox_is_a_counted_error_and_an_outbox_has_one_owner(
    settings_for, topic: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from loopstack.core.events import open_event_log

    settings = settings_for(sqlite_busy_timeout_ms=100)
    log = open_event_log(settings)
    log.append([])
    metrics = EventMetrics()
    path = tmp_path / "outbox" / "small.db"
    publisher = Publisher(log, path, max_events=10, metrics=metrics)
    try:
        with pytest.raises(OutboxLocked):
            Publisher(log, path)
        with outage(settings, request):
            publisher.publish(topic, [outcome(v) for v in range(10)])
            with pytest.raises(PublishQueueFull, match="OUTBOX_MAX_EVENTS"):
                publisher.publish(topic, outcome(10))
        assert (
            metrics.registry.get_sample_value(
                "loopstack_events_publish_rejected_total", {"outbox": "small"}
            )
            == 1
        )
        assert publisher.flush(30) == 0
    finally:
        publisher.close()
        log.close()


def test_a_restart_sends_only_what_the_log_had_not_accepted(
    settings_for, topic: str, tmp_path: Path
) -> None:
    """The watermark decides: rows up to it were in the log, the rest are sent on restart."""
    from loopstack.core.events import open_event_log

    log = open_event_log(settings_for())
    path = tmp_path / "outbox" / "restart.db"
    publisher = Publisher(log, path)
    try:
        publisher.publish(topic, [outcome(v) for v in range(3)])
        assert publisher.flush(20) == 0
    finally:
        publisher.close()
    with sqlite3.connect(path) as db:
        # Caught up: the table was emptied rather than deleted row by row.
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        # What a crash leaves when the sender had marked ids up to 5 of 4..7 as sent.
        db.executemany(
            "INSERT INTO outbox (id, topic, key, value) VALUES (?, ?, 'k', ?)",
            [(4 + v, topic, outcome(3 + v).to_json()) for v in range(4)],
        )
        db.execute("UPDATE outbox_sent SET id = 5")
    publisher = Publisher(log, path)
    try:
        assert publisher.flush(20) == 0
    finally:
        publisher.close()
    try:
        assert sorted(v for vs in read_values(log, topic).values() for v in vs) == [0, 1, 2, 5, 6]
    finally:
        log.close()
