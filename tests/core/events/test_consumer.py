"""Consumer runner: exactly-once application under crashes, dead letters, re-drives."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from loopstack.core.events import (
    ConsumerRunner,
    ConsumerStore,
    Event,
    EventLog,
    EventMetrics,
    EventService,
    OutMessage,
    Publisher,
)
from loopstack.core.events.errors import SchemaViolation
from loopstack.core.processes import stop_group
from loopstack.core.settings import Settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from tests.core.events.helpers import outcome

PROJECT_DIR = Path(__file__).resolve().parents[3]
EVENTS = 10_000


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a child load the same event-log settings."""
    ev = settings.events
    env = {
        **os.environ,
        "LOOPSTACK_PROJECT_DIR": str(settings.project_dir),
        "LOOPSTACK_STATE_DIR": str(settings.state_path),
        "LOOPSTACK_EVENTS__BACKEND": ev.backend,
        "LOOPSTACK_EVENTS__KAFKA_BOOTSTRAP_SERVERS": ev.kafka_bootstrap_servers,
        "LOOPSTACK_EVENTS__PARTITIONS": str(ev.partitions),
        "LOOPSTACK_EVENTS__GROUP_SESSION_TIMEOUT_MS": str(ev.group_session_timeout_ms),
        "LOOPSTACK_EVENTS__GROUP_HEARTBEAT_INTERVAL_MS": str(ev.group_heartbeat_interval_ms),
        "LOOPSTACK_EVENTS__SQLITE_BUSY_TIMEOUT_MS": str(ev.sqlite_busy_timeout_ms),
        **extra,
    }
    env.pop("LOOPSTACK_CONFIG", None)
    return env


def spawn(module: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `python -m module` in its own process group."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=PROJECT_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_two_crashing_consumers_apply_every_event_exactly_once(
    settings: Settings, event_log: EventLog, store_url: str, topic: str, tmp_path: Path
) -> None:
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE totals (id INTEGER PRIMARY KEY, n BIGINT, total BIGINT)"))
        conn.execute(text("INSERT INTO totals VALUES (1, 0, 0)"))
        conn.execute(text("CREATE TABLE applied (event_id VARCHAR(64), v BIGINT)"))
    ConsumerStore(store_url).close()  # create the processed-ids table before the race
    for start in range(0, EVENTS, 1000):
        event_log.append(
            [
                OutMessage(topic, f"e{i % 37}", outcome(i + 1).to_json())
                for i in range(start, start + 1000)
            ]
        )
    # Kill points per member slot: after the store commit but before the offset commit, and in
    # the middle of a batch; then run clean to the end.
    plans = [["commit:2", "apply:450"], ["apply:300", "commit:3"]]
    base = child_env(settings, EV_TOPIC=topic, EV_GROUP=f"crash-{topic}", EV_STORE_URL=store_url)
    procs = [
        spawn(
            "tests.core.events.consumer_child",
            {**base, "EV_KILL_AT": p.pop(0)},
            tmp_path / f"child{i}.log",
        )
        for i, p in enumerate(plans)
    ]
    kills = 0
    deadline = time.monotonic() + 50
    try:
        n = 0
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                n = conn.execute(text("SELECT n FROM totals")).scalar_one()
            if n >= EVENTS and not any(plans):
                break
            for i, proc in enumerate(procs):
                if proc.poll() is not None:
                    assert proc.returncode == -9, (tmp_path / f"child{i}.log").read_text()[-3000:]
                    kills += 1
                    plan = plans[i].pop(0) if plans[i] else ""
                    procs[i] = spawn(
                        "tests.core.events.consumer_child",
                        {**base, "EV_KILL_AT": plan},
                        tmp_path / f"child{i}.log",
                    )
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more may be applied once everything is
    finally:
        for proc in procs:
            stop_group(proc.pid, grace=5)
    with engine.connect() as conn:
        n, total = conn.execute(text("SELECT n, total FROM totals")).one()
        rows, distinct = conn.execute(
            text("SELECT count(*), count(DISTINCT event_id) FROM applied")
        ).one()
    engine.dispose()
    assert kills >= 4, "the consumers were not killed at the injected points"
    assert (n, rows, distinct) == (EVENTS, EVENTS, EVENTS)
    assert total == EVENTS * (EVENTS + 1) // 2


def run_until(runner: ConsumerRunner, done: int, timeout: float = 20.0) -> int:
    """Run batches until `done` records were processed; return how many."""
    seen, deadline = 0, time.monotonic() + timeout
    while seen < done and time.monotonic() < deadline:
        seen += runner.run_once(0.2).records
    return seen


def test_bad_events_go_to_the_dlq_with_their_reason_and_can_be_redriven(
    settings: Settings,
    event_log: EventLog,
    store: ConsumerStore,
    topic: str,
    metrics: EventMetrics,
    tmp_path: Path,
) -> None:
    broken = outcome(99)
    fail = {broken.id}
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE seen (event_id VARCHAR(64))"))

    def handler(event: Event, conn: Connection) -> None:
        if event.id in fail:
            raise RuntimeError("downstream says no")
        conn.execute(text("INSERT INTO seen VALUES (:i)"), {"i": event.id})

    def applied() -> list[str]:
        with store.engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT event_id FROM seen"))]

    # A valid envelope whose data lacks observed_at and source.
    wrong_schema = Event.create("outcome.v1", {"prediction_id": "p", "value": 1}, source="t")
    unknown = Event("io.loopstack.mystery.v1", "t", {"x": 1})
    publisher = Publisher(event_log, tmp_path / "outbox" / "dlq.db", metrics=metrics)
    try:
        publisher.publish(topic, [outcome(1), outcome(2), broken])
        publisher.publish_raw(
            [
                OutMessage(topic, "k", b'{"specversion": "1.0", "id": '),
                OutMessage(topic, "k", wrong_schema.to_json()),
                OutMessage(topic, "k", unknown.to_json()),
            ]
        )
        assert publisher.flush(20) == 0
    finally:
        publisher.close()
    runner = ConsumerRunner(
        event_log,
        store,
        group="dlq-test",
        topics=[topic],
        handler=handler,
        max_retries=2,
        retry_backoff_s=0.01,
        metrics=metrics,
    )
    try:
        assert run_until(runner, 6) == 6
    finally:
        runner.close()
    assert len(applied()) == 2
    service = EventService(event_log)
    letters = [i["dead_letter"] for i in service.dead_letters(topic, limit=10).items]
    by_reason = {d["reason"]: d for d in letters}
    assert sorted(by_reason) == ["handler_failed", "malformed", "schema_invalid", "unknown_type"]
    failed = by_reason["handler_failed"]
    assert failed["attempts"] == 3 and failed["event_id"] == broken.id
    assert failed["group"] == "dlq-test" and failed["topic"] == topic
    assert "downstream says no" in failed["error"] and failed["payload_text"]
    assert by_reason["malformed"]["payload_text"] == '{"specversion": "1.0", "id": '
    assert "observed_at" in by_reason["schema_invalid"]["error"]
    for reason in by_reason:
        assert (
            metrics.registry.get_sample_value(
                "loopstack_events_dead_lettered_total",
                {"topic": topic, "group": "dlq-test", "reason": reason},
            )
            == 1
        )

    # Re-drive after the fix: only the event that can now be applied goes back; twice is harmless.
    fail.clear()
    first = service.redrive(topic)
    assert (first.republished, first.skipped) == (1, 3)
    assert service.redrive(topic).republished == 1
    runner = ConsumerRunner(
        event_log, store, group="dlq-test", topics=[topic], handler=handler, metrics=metrics
    )
    try:
        run_until(runner, 2)
    finally:
        runner.close()
    assert applied().count(broken.id) == 1 and len(applied()) == 3
    assert store.is_processed("dlq-test", broken)


def test_an_old_consumer_applies_events_with_a_new_optional_field(
    event_log: EventLog, store: ConsumerStore, topic: str
) -> None:
    seen: list[dict[str, object]] = []
    event_log.append([OutMessage(topic, "k", outcome(5, confidence=0.9).to_json())])
    runner = ConsumerRunner(
        event_log,
        store,
        group="compat",
        topics=[topic],
        handler=lambda event, _conn: seen.append(event.data),
    )
    try:
        assert run_until(runner, 1) == 1
    finally:
        runner.close()
    assert seen and seen[0]["confidence"] == 0.9


def test_replay_of_a_time_range_is_a_no_op_for_groups_that_applied_it(
    event_log: EventLog, store: ConsumerStore, topic: str
) -> None:
    from datetime import UTC, datetime, timedelta

    applied: list[int] = []
    since = datetime.now(UTC) - timedelta(seconds=1)
    event_log.append([OutMessage(topic, f"k{i}", outcome(i).to_json()) for i in range(20)])
    runner = ConsumerRunner(
        event_log,
        store,
        group="replay",
        topics=[topic],
        handler=lambda event, _conn: applied.append(event.data["value"]),
    )
    try:
        assert run_until(runner, 20) == 20
        result = EventService(event_log).replay(topic, since)
        assert result.republished == 20
        assert run_until(runner, 20) == 20
    finally:
        runner.close()
    assert sorted(applied) == list(range(20))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_tail_pages_through_a_topic(event_log: EventLog, topic: str) -> None:
    event_log.append([OutMessage(topic, f"k{i}", outcome(i).to_json()) for i in range(30)])
    service = EventService(event_log)
    last = service.tail(topic, limit=5)
    assert len(last.items) == 5
    assert service.tail(topic, limit=5, after=last.cursor).items == []
    event_log.append([OutMessage(topic, "k1", outcome(100).to_json())])
    new = service.tail(topic, limit=5, after=last.cursor)
    assert [i["event"]["data"]["value"] for i in new.items] == [100]


def test_events_published_unvalidated_are_still_validated_by_consumers(
    event_log: EventLog, store: ConsumerStore, topic: str, tmp_path: Path
) -> None:
    # Publishing without the publish-side check (trusted in-process code) must not let an
    # invalid event through: the consumer validates again and dead-letters it.
    good = outcome(1)
    invalid = Event.create("outcome.v1", {"prediction_id": "p", "value": 1}, source="t")
    applied: list[str] = []
    publisher = Publisher(event_log, tmp_path / "outbox" / "trusted.db", validate=False)
    try:
        publisher.publish(topic, [good, invalid])
        publisher.publish(topic, [outcome(2)], validate=True)
        with pytest.raises(SchemaViolation):
            publisher.publish(topic, [invalid], validate=True)
        assert publisher.flush(20) == 0
    finally:
        publisher.close()
    runner = ConsumerRunner(
        event_log,
        store,
        group="trusted",
        topics=[topic],
        batch_handler=lambda events, _conn: applied.extend(e.id for e in events),
    )
    try:
        assert run_until(runner, 3) == 3
    finally:
        runner.close()
    assert invalid.id not in applied and good.id in applied and len(applied) == 2
    letters = [i["dead_letter"] for i in EventService(event_log).dead_letters(topic).items]
    assert [(d["reason"], d["event_id"]) for d in letters] == [("schema_invalid", invalid.id)]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_failing_batch_handler_falls_back_to_one_event_at_a_time(
    event_log: EventLog, store: ConsumerStore, topic: str
) -> None:
    events = [outcome(i, key="k") for i in range(5)]
    bad = events[2].id
    calls: list[int] = []
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE seen (event_id VARCHAR(64))"))

    def apply(batch: Sequence[Event], conn: Connection) -> None:
        calls.append(len(batch))
        conn.execute(text("INSERT INTO seen VALUES (:i)"), [{"i": e.id} for e in batch])
        if any(e.id == bad for e in batch):
            raise RuntimeError("downstream says no")

    event_log.append([OutMessage(topic, "k", e.to_json()) for e in events])
    runner = ConsumerRunner(
        event_log,
        store,
        group="batch",
        topics=[topic],
        batch_handler=apply,
        max_retries=1,
        retry_backoff_s=0.01,
    )
    try:
        result = runner.run_once(5.0)
    finally:
        runner.close()
    assert (result.applied, result.dead_lettered) == (4, 1)
    assert calls == [5, 1, 1, 1, 1, 1, 1]  # the batch, then one by one (the bad one twice)
    with store.engine.connect() as conn:
        seen = [r[0] for r in conn.execute(text("SELECT event_id FROM seen"))]
    assert sorted(seen) == sorted(e.id for e in events if e.id != bad)
    assert store.is_processed("batch", events[4]) and not store.is_processed("batch", events[2])
