"""The feedback consumer and event-log errors: a locked log is waited out with back-off (the
warning rate-limited), nothing applied twice or lost; an error a retry cannot cure stops it with
its cause."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from loopstack.core.events import open_event_log
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.settings import Settings, load_settings
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.queries import QualityQueries
from loopstack.monitoring.feedback.store import ReadModel

from tests.core.events.locked_log import LOCKING_EVENTS, run_through_held_lock
from tests.monitoring.feedback.builders import API_CATALOG, PROJECT_DIR, outcome_event
from tests.monitoring.feedback.test_join import append
from tests.monitoring.feedback.test_poison import bike

EVENTS = 30


@pytest.fixture
def locking_settings(tmp_path: Path) -> Settings:
    """SQLite log that gives up on a lock after 100 ms, so a held lock fails writes fast."""
    state = tmp_path / "state"
    return load_settings(
        project_dir=PROJECT_DIR,
        state_dir=state,
        events=LOCKING_EVENTS,
        feedback={"read_model_url": f"sqlite:///{state / 'rm.db'}", "push_sources": {}},
    )


def joined(read_model: ReadModel) -> int:
    return sum(j["joined"] for j in QualityQueries(read_model).quality("bike-demand")["joined"])


def test_locked_event_log_is_waited_out_and_nothing_is_applied_twice(
    locking_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = locking_settings
    log = open_event_log(settings)
    read_model = ReadModel.from_settings(settings)
    consumer = FeedbackConsumer(settings, log, read_model, catalog=API_CATALOG)
    append(log, PREDICTIONS, [bike(i) for i in range(EVENTS)])
    append(log, OUTCOMES, [outcome_event(100 + i, pid=f"pb1-{i}") for i in range(EVENTS)])
    retries = run_through_held_lock(
        log,
        consumer.run,
        lambda: joined(read_model) >= EVENTS,
        caplog,
        "loopstack.monitoring.feedback.consumer",
    )
    assert joined(read_model) == EVENTS
    assert retries and "feedback consumer" in retries[0].getMessage()
    assert len(retries) <= 2  # throttled, whatever the number of attempts
    consumer.close()

    # A restarted consumer reads what was not committed again; nothing counts twice.
    again = FeedbackConsumer(settings, log, read_model, catalog=API_CATALOG)
    again.drain()
    again.close()
    assert joined(read_model) == EVENTS
    read_model.close()
    log.close()


class _Broken(FeedbackConsumer):
    def run_once(self, timeout: float = 0.5):  # type: ignore[no-untyped-def]
        raise TypeError("feedback: a bug")


def test_error_a_retry_cannot_cure_stops_the_consumer_with_its_cause(
    locking_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    log = open_event_log(locking_settings)
    read_model = ReadModel.from_settings(locking_settings)
    consumer = FeedbackConsumer(locking_settings, log, read_model, catalog=API_CATALOG)
    consumer.__class__ = _Broken
    with pytest.raises(TypeError, match="a bug"):
        consumer.run(threading.Event(), poll_timeout=0.1)
    assert "feedback consumer stops" in caplog.text
    assert "a retry cannot cure this" in caplog.text and "TypeError: feedback: a bug" in caplog.text
    consumer.close()
    read_model.close()
    log.close()
