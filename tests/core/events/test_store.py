"""Consumer store: the batched processed-id claim that makes redelivery a no-op."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from loopstack.core.events import (
    BatchResult,
    ConsumerRunner,
    ConsumerStore,
    Event,
    EventLog,
    OutMessage,
)
from loopstack.core.events import store as store_module
from sqlalchemy.engine import Connection

from tests.core.events.helpers import outcome


@pytest.fixture(params=["driver", "core"])
def statement_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The driver's own SQL (the default) or SQLAlchemy Core (drivers of other paramstyles)."""
    if request.param == "core":
        monkeypatch.setattr(store_module, "_placeholder", lambda _conn: None)
    return str(request.param)


def test_claim_takes_each_new_id_once_within_and_across_batches(
    store: ConsumerStore, statement_path: str
) -> None:
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", ["a", "b", "a"]) == {"a", "b"}
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", ["b", "c", "c"]) == {"c"}
        assert store.claim(conn, "other", ["a"]) == {"a"}  # groups are independent
    assert all(store.is_processed("g", i) for i in "abc")
    with store.engine.connect() as conn:
        assert store.processed(conn, "g", ["a", "b", "c", "d"]) == {"a", "b", "c"}


def test_a_rolled_back_claim_leaves_the_ids_unclaimed(store: ConsumerStore) -> None:
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        assert store.claim(conn, "g", ["x"]) == {"x"}
        raise RuntimeError("handler failed")
    assert not store.is_processed("g", "x")
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", ["x"]) == {"x"}


def test_claim_handles_more_ids_than_one_statement_takes(store: ConsumerStore) -> None:
    ids = [f"id-{i}" for i in range(1_234)]
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", ids[:600]) == set(ids[:600])
    with store.engine.begin() as conn:
        assert store.claim(conn, "g", ids + ids[:10]) == set(ids[600:])


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
