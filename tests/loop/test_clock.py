"""One clock per model: a replay of past event times after live wall-clock requests still
triggers, shadows and decides; one model's traffic never moves another's clock."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from loopstack.core.events.envelope import Event
from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.loop.clock import REWIND, ModelClocks, latest_request_times
from loopstack.loop.decisions import DecisionRecorder, iso
from loopstack.loop.evidence import RolloutEvidence
from loopstack.loop.failures import ModelFailures
from loopstack.loop.stats import verdict
from loopstack.loop.store import LoopStore
from loopstack.loop.trigger import TriggerPolicy, TriggerRequest
from loopstack.monitoring.feedback.tables import metadata as feedback_metadata
from loopstack.monitoring.feedback.tables import predictions
from loopstack.pipelines.state import RunState
from sqlalchemy import create_engine, insert

from tests.conftest import PROJECT_DIR
from tests.loop.test_trigger import Published

LIVE = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
REPLAY = datetime(2011, 4, 1, 12)


def _predictions(model: str, times: list[datetime]) -> list[Event]:
    return [
        Event.create(
            "prediction.v1",
            {
                "model": model,
                "version": "1",
                "route": "champion",
                "request_time": iso(t),
                "prediction_id": f"{model}-{t}",
            },
            source="loopstack/serving",
        )
        for t in times
    ]


def _observe(store: LoopStore, clocks: ModelClocks, events: list[Event]) -> dict[str, bool]:
    """What the controller does with one consumed batch."""
    with store.engine.begin() as conn:
        return {m: clocks.observe(conn, m, t) for m, t in latest_request_times(events).items()}


@pytest.fixture
def store(tmp_path: Path) -> LoopStore:
    return LoopStore(f"sqlite:///{tmp_path / 'loop.db'}")


def test_each_model_has_its_own_clock_and_a_replay_rewinds_it(store: LoopStore) -> None:
    clocks = ModelClocks(store.engine, lambda _m: None)
    _observe(store, clocks, _predictions("bike-demand", [LIVE - timedelta(minutes=2), LIVE]))
    _observe(store, clocks, _predictions("credit-risk", [LIVE + timedelta(minutes=5)]))
    assert clocks.now("bike-demand") == LIVE
    with store.engine.begin() as conn:  # a shadow that started on the live clock
        store.state(conn, "bike-demand")
        store.save(conn, "bike-demand", phase="shadow", challenger="2", phase_started_at=LIVE)

    # Small disorder (concurrent clients) never moves a clock back.
    late = _observe(store, clocks, _predictions("bike-demand", [LIVE - REWIND / 2]))
    assert late == {"bike-demand": False} and clocks.now("bike-demand") == LIVE
    # The model's traffic jumps back: a replay of 2011 after the live requests.
    rewound = _observe(
        store, clocks, _predictions("bike-demand", [REPLAY, REPLAY + timedelta(hours=1)])
    )
    assert rewound == {"bike-demand": True}
    timeline = clocks.timeline("bike-demand")
    assert timeline.now == REPLAY + timedelta(hours=1) and timeline.started_at == timeline.now
    assert timeline.rewound_at is not None and timeline.rewound_at >= LIVE - timedelta(minutes=1)
    with store.engine.begin() as conn:  # the shadow now counts the replay's requests
        assert store.state(conn, "bike-demand")["phase_started_at"] == timeline.now
    # A drift window that ended on the live clock is decided on the replay's.
    assert timeline.on(LIVE) == timeline.now
    # The replay moves on; another model's live traffic moves only its own clock.
    _observe(store, clocks, _predictions("credit-risk", [LIVE + timedelta(hours=2)]))
    _observe(store, clocks, _predictions("bike-demand", [REPLAY + timedelta(days=3)]))
    assert clocks.now("bike-demand") == REPLAY + timedelta(days=3)
    assert clocks.now("credit-risk") == LIVE + timedelta(hours=2)


def test_before_any_traffic_the_clock_is_the_latest_decision_then_the_wall_clock(
    store: LoopStore,
) -> None:
    decided = {"bike-demand": REPLAY}
    clocks = ModelClocks(store.engine, decided.get)
    assert clocks.now("bike-demand") == REPLAY
    # LIVE is taken at collection, minutes before this runs in the whole suite.
    wall = datetime.now(UTC).replace(tzinfo=None)
    assert abs(clocks.now("credit-risk") - wall) < timedelta(minutes=1)


def _policy(store: LoopStore) -> tuple[TriggerPolicy, list[dict[str, str]]]:
    spec = load_model_spec(PROJECT_DIR / "models", "bike-demand")
    started: list[dict[str, str]] = []

    def start(params: dict[str, str]) -> RunState:
        started.append(params)
        return RunState(run_id=f"run-{len(started)}", pipeline="train", params=params, run_dir="/x")

    # Outcomes came back for the live requests and, 30 h behind, for the replay.
    labelled = [REPLAY - timedelta(hours=30), LIVE]
    rules = TriggerPolicy(store, DecisionRecorder(Published()), lambda _m: spec, start,
                          lambda _m, at: max((t for t in labelled if t <= at), default=None))  # fmt: skip
    return rules, started


def _drift(at: datetime, key: str) -> TriggerRequest:
    return TriggerRequest("bike-demand", "drift", at, "feature drift on v1", key, {"version": "1"})


def test_a_replay_after_live_requests_triggers_on_its_own_window(store: LoopStore) -> None:
    rules, started = _policy(store)
    live = rules.request(_drift(LIVE, "live"))  # the live test requests retrained once, today
    assert live["kind"] == "trigger_fired"
    with store.engine.begin() as conn:
        store.save(conn, "bike-demand", phase="idle", run_id=None)

    replayed = rules.request(_drift(REPLAY, "replay-1"))
    assert replayed["kind"] == "trigger_fired", replayed["reason"]
    # Trained on what the replay labelled, not on today's labels.
    assert (started[-1]["start"], started[-1]["end"]) == ("2010-12-31", "2011-03-31")
    with store.engine.begin() as conn:
        store.save(conn, "bike-demand", phase="idle", run_id=None)
    # Within the replay, the cooldown holds as it does live.
    again = rules.request(_drift(REPLAY + timedelta(days=2), "replay-2"))
    assert again["kind"] == "trigger_suppressed" and "cooldown until 2011-" in again["reason"]
    # A rewind to just before the last retraining is within the cooldown too.
    before = rules.request(_drift(REPLAY - timedelta(days=1), "replay-3"))
    assert before["kind"] == "trigger_suppressed" and "cooldown" in before["reason"]


def test_shadow_pairs_of_a_replay_count_after_the_shadow_started_on_the_live_clock(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'feedback.db'}")
    feedback_metadata.create_all(engine)
    rng = np.random.default_rng(7)
    rows = []
    for i in range(214):  # the 214 replayed shadow pairs, all before the live clock
        at, outcome = REPLAY + timedelta(hours=i), float(rng.normal(100, 20))
        common = {"model": "bike-demand", "request_time": at, "status": "ok", "segments": "{}",
                  "document": json.dumps({}), "outcome_value": outcome}  # fmt: skip
        rows.append({**common, "prediction_id": f"p{i}", "version": "1", "route": "champion",
                     "correlation": None, "score": outcome + rng.normal(0, 30),
                     "event_id": f"e{i}"})  # fmt: skip
        rows.append({**common, "prediction_id": f"s{i}", "version": "2", "route": "shadow",
                     "correlation": f"p{i}", "score": outcome + rng.normal(0, 5),
                     "event_id": f"es{i}"})  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(predictions), rows)
    spec: ModelSpec = load_model_spec(PROJECT_DIR / "models", "bike-demand")

    pairs = RolloutEvidence(engine).pairs("bike-demand", spec.task, "1", "2")
    assert len(pairs.champion) == len(pairs.challenger) == 214
    rollout = spec.rollout
    decided = verdict(pairs.champion, pairs.challenger, rollout.alpha, rollout.power,
                      rollout.effect_size)  # fmt: skip
    assert decided.action == "promote", decided.reason
    engine.dispose()


def test_a_malformed_second_spec_does_not_stop_deciding_for_the_first(
    store: LoopStore, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(PROJECT_DIR / "models" / "bike-demand", models / "bike-demand")
    (models / "broken").mkdir()
    (models / "broken" / "model.yaml").write_text("name: broken\ntask: [regression\n")
    failing = tmp_path / "models" / "failing"
    shutil.copytree(PROJECT_DIR / "models" / "bike-demand", failing)
    spec_text = (failing / "model.yaml").read_text().replace("name: bike-demand", "name: failing")
    (failing / "model.yaml").write_text(spec_text)
    rules, started = _policy(store)
    failures = ModelFailures(store.engine)

    def step(spec: ModelSpec) -> None:
        if spec.name == "failing":
            raise RuntimeError("its evidence query failed")
        rules.request(_drift(REPLAY, f"tick-{len(started)}"))

    outcome = failures.advance(models, None, step)
    assert outcome["bike-demand"] is None and len(started) == 1  # decided despite the others
    assert "not valid YAML" in (outcome["broken"] or "")
    assert "its evidence query failed" in (outcome["failing"] or "")
    assert set(failures.current()) == {"broken", "failing"}
    assert "broken/model.yaml" in failures.current()["broken"]["reason"]

    # Fixed: the next tick forgets the failure; a model outside `loop.models` is not reported.
    (models / "broken" / "model.yaml").write_text(
        spec_text.replace("name: failing", "name: broken")
    )
    again = failures.advance(models, {"bike-demand", "broken"}, lambda _s: None)
    assert again == {"bike-demand": None, "broken": None}
    assert failures.current() == {}
