"""The trigger policy: fire, or suppress with a reason (in flight, rollout, cooldown, switched off)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from loopstack.core.events.envelope import Event
from loopstack.core.events.schema import validate_data
from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.loop.decisions import DecisionRecorder
from loopstack.loop.store import LoopStore
from loopstack.loop.trigger import TriggerPolicy, TriggerRequest
from loopstack.pipelines.state import RunState

from tests.conftest import PROJECT_DIR

T0 = datetime(2011, 4, 1, 12)


class Published:
    """Collects what the recorder queues (the outbox's publish signature), schema-checked."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, topic: str, events: Event) -> None:
        validate_data(events.name, events.data)
        self.events.append(events)

    def kinds(self) -> list[str]:
        return [e.data["kind"] for e in self.events]


@pytest.fixture
def policy(tmp_path: Path) -> tuple[TriggerPolicy, Published, list[dict[str, str]], LoopStore]:
    spec = load_model_spec(PROJECT_DIR / "models", "bike-demand")
    published, started = Published(), []

    def start(params: dict[str, str]) -> RunState:
        started.append(params)
        return RunState(run_id=f"run-{len(started)}", pipeline="train", params=params, run_dir="/x")

    store = LoopStore(f"sqlite:///{tmp_path / 'loop.db'}")
    rules = TriggerPolicy(store, DecisionRecorder(published), lambda _m: spec, start,
                          lambda _m, _at: T0 - timedelta(hours=30))  # fmt: skip
    return rules, published, started, store


def _drift(at: datetime, key: str = "e1") -> TriggerRequest:
    return TriggerRequest(
        "bike-demand", "drift", at, "feature drift on v1: temp", key, {"version": "1"}
    )


def test_fires_on_the_labelled_window_then_suppresses_while_in_flight(policy) -> None:  # type: ignore[no-untyped-def]
    rules, published, started, _ = policy
    fired = rules.request(_drift(T0))
    assert fired["kind"] == "trigger_fired" and fired["pipeline_run_id"] == "run-1"
    # Outcomes are known up to 30 h before: the window ends on that day, 90 days long.
    assert started[0] == {"start": "2010-12-31", "end": "2011-03-31", "as_of": "2011-04-01T12:00:00Z",
                          "model": "bike-demand"}  # fmt: skip
    again = rules.request(_drift(T0 + timedelta(hours=1), "e2"))
    assert again["kind"] == "trigger_suppressed" and "run-1 is in flight" in again["reason"]
    assert published.kinds() == ["trigger_fired", "pipeline_started", "trigger_suppressed"]
    assert len(started) == 1


def test_cooldown_holds_alerts_but_not_a_person(policy) -> None:  # type: ignore[no-untyped-def]
    rules, _, started, store = policy
    rules.request(_drift(T0))
    with store.engine.begin() as conn:
        store.save(conn, "bike-demand", phase="idle", run_id=None)
    held = rules.request(_drift(T0 + timedelta(days=2), "e2"))
    assert held["kind"] == "trigger_suppressed" and "cooldown until" in held["reason"]
    manual = rules.request(TriggerRequest("bike-demand", "manual", T0 + timedelta(days=2), "by hand",
                                          "m1", params={"sabotage": "shuffle-labels"}))  # fmt: skip
    assert manual["kind"] == "trigger_fired" and started[-1]["sabotage"] == "shuffle-labels"
    with store.engine.begin() as conn:
        store.save(conn, "bike-demand", phase="idle", run_id=None)
    later = rules.request(_drift(T0 + timedelta(days=30), "e3"))
    assert later["kind"] == "trigger_fired"


def test_a_rollout_in_progress_and_a_switched_off_source_suppress(policy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rules, _, started, store = policy
    with store.engine.begin() as conn:
        store.state(conn, "bike-demand")
        store.save(conn, "bike-demand", phase="shadow", challenger="4")
    busy = rules.request(_drift(T0))
    assert "v4 is in rollout (shadow)" in busy["reason"]
    spec: ModelSpec = rules.spec_of("bike-demand")
    rules.spec_of = lambda _m: spec.model_copy(
        update={"trigger": spec.trigger.model_copy(update={"on_drift": False})}
    )
    off = rules.request(_drift(T0, "e9"))
    assert "trigger.on_drift is off" in off["reason"] and not started
