"""Poison outcomes against the session stack's real processes (management API, feedback
consumer, SQLite event log): an out-of-class or huge outcome sent right after its prediction is
refused at intake; poison outcome events put straight into the log are dead-lettered with their
reason while the consumer stays up (same process, no restart), every valid outcome is applied
once and the window metrics are computed; a window that still cannot be scored (answers logged
before servers logged class probabilities) is listed as failed and the others go on; a rebuild
during quality reads never answers 500.

Each test uses a fresh version of credit-default (classes 0/1 in its spec), so nothing here
touches the windows other tests read. Nothing is killed: the stack's consumer is only fed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from loopstack.core.events import Event, open_event_log
from loopstack.core.events.log.base import OutMessage
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.processes import RunningProcess, Supervisor
from loopstack.core.settings import Settings

from tests.conftest import Stack

pytestmark = pytest.mark.integration

MODEL = "credit-default"
WINDOW = 200  # credit-default's quality.window_size (the spec default)
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def answer(pid: str, version: str, i: int, probabilities: bool = True) -> Event:
    """A credit-default prediction event as the inference server logs it."""
    p1 = (i % 10) / 10
    outputs: dict[str, Any] = {"prediction": [p1]}  # before servers logged class probabilities
    if probabilities:
        outputs = {"prediction": [int(p1 >= 0.5)], "probabilities": {"0": 1 - p1, "1": p1}}
    data = {
        "prediction_id": pid,
        "model": MODEL,
        "version": version,
        "route": "champion",
        "protocol": "v2-rest",
        "inputs": {"customer_id": i},
        "outputs": outputs,
        "status": "ok",
        "latency_ms": 2.0,
        "entity_key": {"customer_id": i},
        "request_time": _iso(T0 + timedelta(minutes=i)),
    }
    return Event.create("prediction.v1", data, source="tests/faults", subject=MODEL)


def outcome(pid: str, value: Any) -> Event:
    """An outcome event as intake would publish it, but put into the log directly."""
    data = {"value": value, "observed_at": _iso(T0 + timedelta(days=1)), "source": "system"}
    data["prediction_id"] = pid
    return Event.create("outcome.v1", data, source="tests/faults", partitionkey=pid)


def append(settings: Settings, topic: str, events: list[Event]) -> None:
    """Append events to the stack's log as their producer would."""
    log = open_event_log(settings)
    try:
        log.append([OutMessage(topic, e.partitionkey, e.to_json()) for e in events])
    finally:
        log.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout}s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.settings.api_url, timeout=60) as client:
        yield client


def consumer_process(stack: Stack) -> RunningProcess:
    found = Supervisor(stack.settings.state_path).read("feedback")
    assert found is not None and found.alive(), "the stack's feedback consumer is not running"
    return found


def stored(api: httpx.Client, pid: str) -> bool:
    return api.get(f"/v1/predictions/{pid}").status_code == 200


def caught_up(stack: Stack, api: httpx.Client) -> None:
    """Wait until the stack's consumer has applied everything in the log so far."""
    probe = answer(f"probe-{uuid.uuid4().hex}", "probe", 0)
    append(stack.settings, PREDICTIONS, [probe])
    wait_for(lambda: stored(api, probe.data["prediction_id"]), 60, "the consumer is behind")


def dead_letters(api: httpx.Client) -> dict[str, str]:
    """Event id -> error of every dead letter of `outcomes`."""
    found: dict[str, str] = {}
    after = None
    while True:
        params = {"topic": OUTCOMES, "limit": 1000, **({"after": after} if after else {})}
        page = api.get("/v1/events/dlq", params=params).json()
        found.update(
            {i["dead_letter"]["event_id"]: i["dead_letter"]["error"] for i in page["items"]}
        )
        if not page["items"] or not page.get("cursor") or page["cursor"] == after:
            return found
        after = page["cursor"]


def test_an_outcome_sent_right_after_its_prediction_is_checked_at_intake(
    stack: Stack, api: httpx.Client
) -> None:
    caught_up(stack, api)
    version = f"race-{uuid.uuid4().hex[:8]}"
    racing = [answer(f"{version}-{i}", version, i) for i in range(3)]
    # Answered and logged; the outcomes follow at once, before the consumer stored it.
    append(stack.settings, PREDICTIONS, racing)
    sent = api.post(
        "/v1/feedback",
        json=[
            {"prediction_id": f"{version}-0", "outcome": 5, "observed_at": _iso(T0)},
            {"prediction_id": f"{version}-1", "outcome": 1e300, "observed_at": _iso(T0)},
        ],
    )
    assert sent.status_code == 422, sent.text
    reasons = [item["reason"] for item in sent.json()["items"]]
    assert all(f"is not a class of model '{MODEL}'" in r for r in reasons), reasons
    assert all("allowed values are 0, 1" in r for r in reasons)

    never_logged = {"prediction_id": uuid.uuid4().hex, "outcome": 1e300, "observed_at": _iso(T0)}
    sent = api.post("/v1/feedback", json=[never_logged])
    assert sent.status_code == 422 and "max_outcome_abs" in sent.json()["items"][0]["reason"]

    valid = api.post(
        "/v1/feedback",
        json=[{"prediction_id": f"{version}-2", "outcome": 1, "observed_at": _iso(T0)}],
    )
    assert valid.status_code == 200
    wait_for(
        lambda: (
            (api.get(f"/v1/predictions/{version}-2").json().get("outcome") or {}).get("value") == 1
        ),
        60,
        "the valid outcome was not joined",
    )


def test_poison_events_are_dead_lettered_and_the_consumer_stays_up(
    stack: Stack, api: httpx.Client
) -> None:
    before = consumer_process(stack)
    version, old = f"poison-{uuid.uuid4().hex[:8]}", f"old-{uuid.uuid4().hex[:8]}"
    answers = [answer(f"{version}-{i}", version, i) for i in range(WINDOW)]
    older = [answer(f"{old}-{i}", old, i, probabilities=False) for i in range(WINDOW)]
    append(stack.settings, PREDICTIONS, answers + older)
    wait_for(lambda: stored(api, f"{old}-{WINDOW - 1}"), 60, "predictions not stored")

    # Straight into the log, around intake: each is dead-lettered, the batch goes on.
    poison = [outcome(f"{version}-0", 1e300), outcome(f"{version}-1", 5)]
    poison.append(outcome(f"{version}-2", "default"))
    truth = [int(i % 10 >= 5) if i % 3 else 1 - int(i % 10 >= 5) for i in range(WINDOW)]
    valid = [outcome(f"{version}-{i}", truth[i]) for i in range(WINDOW)]
    # A 5 fits a score-only answer, so only the window's metrics can find it out.
    older_outcomes = [outcome(f"{old}-{i}", 5 if i == 7 else truth[i]) for i in range(WINDOW)]
    append(stack.settings, OUTCOMES, poison + valid + older_outcomes)

    def scored() -> bool:
        quality = api.get(f"/v1/models/{MODEL}/quality", params={"version": version}).json()
        return bool(quality.get("windows")) and "auc" in quality["windows"][0]["metrics"]

    wait_for(scored, 120, "the window was not scored")
    letters = dead_letters(api)
    assert {e.id for e in poison} <= set(letters)
    assert "max_outcome_abs" in letters[poison[0].id]
    assert "not one of the classes 0, 1" in letters[poison[1].id]
    assert "PoisonOutcome" in letters[poison[2].id]

    window = api.get(f"/v1/models/{MODEL}/quality", params={"version": version}).json()
    [metrics] = [w["metrics"] for w in window["windows"]]
    assert metrics["count"] == WINDOW  # every valid outcome, once
    assert 0.0 <= metrics["auc"] <= 1.0 and window["failed_windows"] == []
    for i in range(3):
        assert api.get(f"/v1/predictions/{version}-{i}").json()["outcome"]["value"] == truth[i]

    def failed() -> list[dict[str, Any]]:
        quality = api.get(f"/v1/models/{MODEL}/quality", params={"version": old}).json()
        return list(quality["failed_windows"])

    wait_for(lambda: bool(failed()), 60, "the unscorable window was not reported")
    [report] = failed()
    assert report["window"] == 0 and "ValueError" in report["reason"]
    shown = stack.cli("quality", MODEL, "--version", old)
    assert shown.returncode == 0, shown.stderr
    assert f"window 0 of v{old} champion has no metrics: ValueError" in shown.stdout

    after = consumer_process(stack)
    assert (after.pid, after.restarts) == (before.pid, before.restarts)
    metrics_url = f"http://{stack.settings.host}:{stack.settings.feedback.metrics_port}/metrics"
    exposed = httpx.get(metrics_url, timeout=10).text
    assert f'loopstack_quality_windows_failed{{model="{MODEL}"}}' in exposed


def test_a_rebuild_during_quality_reads_never_answers_500(stack: Stack, api: httpx.Client) -> None:
    caught_up(stack, api)
    before = api.get(f"/v1/models/{MODEL}/quality").json()
    statuses: list[tuple[int, str]] = []
    stop = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=stack.settings.api_url, timeout=60) as reader:
            while not stop.is_set():
                got = reader.get(f"/v1/models/{MODEL}/quality")
                statuses.append((got.status_code, got.text[:300]))

    readers = [threading.Thread(target=read, daemon=True) for _ in range(2)]
    for thread in readers:
        thread.start()
    rebuilt = api.post("/v1/feedback/rebuild", timeout=600)
    stop.set()
    for thread in readers:
        thread.join(timeout=60)
    assert rebuilt.status_code == 200, rebuilt.text
    assert statuses and all(code in (200, 503) for code, _ in statuses), [
        s for s in statuses if s[0] not in (200, 503)
    ][:3]
    assert all("being rebuilt" in text for code, text in statuses if code == 503)

    caught_up(stack, api)
    after = api.get(f"/v1/models/{MODEL}/quality").json()
    assert scores(after) == scores(before)
    assert failures(after) == failures(before)


def scores(quality: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Metrics by (version, route, window)."""
    return {(w["version"], w["route"], w["window"]): w["metrics"] for w in quality["windows"]}


def failures(quality: dict[str, Any]) -> list[tuple[str, str, int, str]]:
    """Failed windows with their reasons (not when they failed)."""
    return [(f["version"], f["route"], f["window"], f["reason"]) for f in quality["failed_windows"]]
