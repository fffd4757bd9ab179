"""Consumer store: the batched claim of applied events that makes redelivery a no-op."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy
from loopstack.core.events import (
    BatchResult,
    ConsumerRunner,
    ConsumerStore,
    Event,
    EventLog,
    OutMessage,
)
from loopstack.core.events import store as store_module
from sqlalchemy import text
from sqlalchemy.engine import Connection

from tests.core.events.helpers import outcome

_PLUS_2 = timezone(timedelta(hours=2))


@pytest.fixture(params=["driver", "core"])
def statement_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The driver's own SQL (the default) or SQLAlchemy Core (drivers of other paramstyles)."""
    if request.param == "core":
        monkeypatch.setattr(store_module, "_placeholder", lambda _conn: None)
    return str(request.param)


def test_claim_takes_each_new_event_once_within_and_across_batches(
    store: ConsumerStore, statement_path: str
) -> None:
    a, b, c, d = (outcome(i) for i in range(4))
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", [a, b, a]) == {a.id, b.id}
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", [b, c, c]) == {c.id}
        assert store.claim(conn, "other", [a]) == {a.id}  # groups are independent
    assert all(store.is_processed("g", e) for e in (a, b, c))
    with store.engine.connect() as conn:
        assert store.processed(conn, "g", [a, b, c, d]) == {a.id, b.id, c.id}


def test_a_copy_of_an_event_read_back_from_the_log_is_the_same_event(store: ConsumerStore) -> None:
    event = outcome(1).with_changes(time=datetime(2026, 11, 1, 14, 0, 0, 123456, tzinfo=_PLUS_2))
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", [event]) == {event.id}
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", [Event.from_json(event.to_json())]) == set()


def test_a_rolled_back_claim_leaves_the_event_unclaimed(store: ConsumerStore) -> None:
    x = outcome(1)
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        assert store.claim(conn, "g", [x]) == {x.id}
        raise RuntimeError("handler failed")
    assert not store.is_processed("g", x)
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", [x]) == {x.id}


def test_claim_handles_more_events_than_one_statement_takes(store: ConsumerStore) -> None:
    events = [outcome(i) for i in range(1_234)]
    ids = [e.id for e in events]
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", events[:600]) == set(ids[:600])
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", events + events[:10]) == set(ids[600:])


def test_unclaim_and_forget_group_let_events_apply_again(store: ConsumerStore) -> None:
    a, b = outcome(1), outcome(2)
    with store.engine.begin() as conn:
        store.claim(conn, "g", [a, b])
        store.claim(conn, "h", [a])
    with store.engine.begin() as conn:
        store.unclaim(conn, "g", [a])
    assert not store.is_processed("g", a) and store.is_processed("g", b)
    with store.engine.begin() as conn:
        store.forget_group(conn, "g")
    assert not store.is_processed("g", b) and store.is_processed("h", a)


def test_events_applied_before_the_store_keyed_them_by_time_stay_applied(tmp_path: Path) -> None:
    """A store written by an earlier release: its (group, id) marks are still honoured."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old, new = outcome(1), outcome(2)
    with sqlalchemy.create_engine(url).begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE loopstack_processed_events (consumer_group VARCHAR(255), "
                "event_id VARCHAR(64), processed_at DATETIME NOT NULL, "
                "PRIMARY KEY (consumer_group, event_id))"
            )
        )
        conn.execute(
            text("INSERT INTO loopstack_processed_events VALUES ('g', :i, :at)"),
            {"i": old.id, "at": datetime.now(UTC).replace(tzinfo=None)},
        )
    store = ConsumerStore(url)
    try:
        assert store.is_processed("g", old)
        with store.engine.begin() as conn:
            assert store.claim(conn, "g", [old, new]) == {new.id}
        assert store.prune(timedelta(seconds=0)) == 3  # both tables are pruned
        with store.engine.begin() as conn:
            assert store.claim(conn, "g", [old]) == {old.id}
    finally:
        store.close()


def test_copies_of_an_event_in_one_batch_and_a_later_one_are_applied_once(
    event_log: EventLog, store: ConsumerStore, topic: str
) -> None:
    events = [outcome(i) for i in range(3)]
    again = events[1].to_json()
    # One poll returns the first five (two copies of events[1]); the last copy comes later.
    first = [OutMessage(topic, "k", e.to_json()) for e in events]
    event_log.append([*first[:2], OutMessage(topic, "k", again), *first[2:]])
    applied: list[str] = []

    def apply(batch: Sequence[Event], _conn: Connection) -> None:
        applied.extend(e.id for e in batch)

    runner = ConsumerRunner(event_log, store, group="dups", topics=[topic], batch_handler=apply)
    try:
        first_pass = run_until(runner, 4)
        event_log.append([OutMessage(topic, "k", again)])
        second_pass = run_until(runner, 1)
    finally:
        runner.close()
    assert (first_pass.records, first_pass.applied, first_pass.duplicates) == (4, 3, 1)
    assert (second_pass.records, second_pass.applied, second_pass.duplicates) == (1, 0, 1)
    assert sorted(applied) == sorted(e.id for e in events)


def run_until(runner: ConsumerRunner, records: int, timeout: float = 20.0) -> BatchResult:
    """Run batches until `records` records were processed; return the summed results."""
    total = BatchResult()
    deadline = time.monotonic() + timeout
    while total.records < records and time.monotonic() < deadline:
        result = runner.run_once(0.2)
        total.records += result.records
        total.applied += result.applied
        total.duplicates += result.duplicates
    return total


def test_a_runner_forgets_marks_older_than_its_retention(
    event_log: EventLog, store: ConsumerStore, topic: str
) -> None:
    old = outcome(1)
    with store.engine.begin() as conn:
        store.claim(conn, "aging", [old])
    event_log.append([OutMessage(topic, "k", outcome(2).to_json())])
    runner = ConsumerRunner(
        event_log,
        store,
        group="aging",
        topics=[topic],
        batch_handler=lambda _events, _conn: None,
        processed_retention=timedelta(0),
    )
    try:
        run_until(runner, 1)
    finally:
        runner.close()
    assert not store.is_processed("aging", old)  # pruned when the runner started


def test_a_read_does_not_wait_for_a_writer_holding_the_lock(store: ConsumerStore) -> None:
    """An API read while a consumer applies a batch: it answers at once, from the last commit."""
    a, b = outcome(0), outcome(1)
    with store.engine.begin() as conn:
        store.claim(conn, "g", [a])
    with store.engine.begin() as writer:  # a consumer's batch, not committed yet
        store.claim(writer, "g", [b])
        started = time.monotonic()
        with store.read() as conn:
            seen = store.processed(conn, "g", [a, b])
        assert time.monotonic() - started < 1.0
        assert seen == {a.id}  # the snapshot of the last commit, not the batch in flight
        assert store.is_processed("g", a) and not store.is_processed("g", b)
    assert store.is_processed("g", b)


def test_a_sqlite_read_connection_cannot_write(tmp_path: Path) -> None:
    """A read path that tried to write would take the lock readers must not: it fails instead."""
    store = ConsumerStore(f"sqlite:///{tmp_path / 'store.db'}")
    event = outcome(0)
    refused = (sqlalchemy.exc.OperationalError, sqlite3.OperationalError)
    try:
        with store.read() as conn, pytest.raises(refused, match="readonly"):
            store.claim(conn, "g", [event])
        with store.engine.begin() as conn:  # the writer still writes
            assert store.claim(conn, "g", [event]) == {event.id}
    finally:
        store.close()
