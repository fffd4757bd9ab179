"""Traffic splits on a running server: canary share, sticky routing, shadow, live changes."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from loopstack.serving.traffic import TrafficSplit

from .conftest import BIKE, CREDIT, Served, bike_full_row, known_customers, wait_events

pytestmark = pytest.mark.integration


def _predict(client: httpx.Client, served: Served, model: str, instance: dict[str, object]) -> dict:
    answer = client.post(f"{served.rest}/v1/models/{model}:predict", json={"instances": [instance]})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.usefixtures("restore")
def test_canary_routes_about_its_percent_and_events_agree(served: Served) -> None:
    v1, v2 = served.versions["v1"], served.versions["v2"]
    served.deploy(
        TrafficSplit(model=BIKE, champion=v1, challenger=v2, mode="canary", canary_percent=30)
    )
    with httpx.Client() as client:
        answers = [_predict(client, served, BIKE, bike_full_row(h % 24)) for h in range(400)]
    routes = Counter(a["route"] for a in answers)
    # Binomial(400, 0.3): mean 120, sd 9.2; ±4 sd keeps the false-failure rate negligible.
    assert abs(routes["canary"] - 120) <= 37, routes
    assert {a["model_version"] for a in answers if a["route"] == "canary"} == {v2}
    assert {a["model_version"] for a in answers if a["route"] == "champion"} == {v1}
    sample = {a["id"]: a for a in answers[:40]}
    for pid, event in served.events(set(sample)).items():
        assert (event["data"]["route"], event["data"]["version"]) == (
            sample[pid]["route"],
            sample[pid]["model_version"],
        )


@pytest.mark.usefixtures("restore")
def test_sticky_canary_keeps_each_entity_on_one_version(served: Served) -> None:
    c1, c2 = served.versions["credit"], served.versions["credit2"]
    split = TrafficSplit(
        model=CREDIT, champion=c1, challenger=c2, mode="canary", canary_percent=50, sticky=True
    )
    served.deploy(split)
    customers = known_customers(12)
    seen: dict[int, set[str]] = {}
    with httpx.Client() as client:
        for _ in range(4):
            for customer in customers:
                got = _predict(client, served, CREDIT, {"customer_id": customer})
                seen.setdefault(customer, set()).add(got["model_version"])
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert {v for versions in seen.values() for v in versions} == {c1, c2}


@pytest.mark.usefixtures("restore")
def test_a_new_revision_is_served_without_restart(served: Served) -> None:
    before = httpx.get(f"{served.rest}/metrics").text
    with httpx.Client() as client:
        assert (
            _predict(client, served, BIKE, bike_full_row())["model_version"]
            == served.versions["v1"]
        )
        served.deploy(TrafficSplit(model=BIKE, champion=served.versions["v2"]))
        assert (
            _predict(client, served, BIKE, bike_full_row())["model_version"]
            == served.versions["v2"]
        )
    assert "process_start_time_seconds" in before  # same process: its counters kept counting
    assert httpx.get(f"{served.rest}/metrics").text.count("loopstack_serving_requests_total") >= 1


@pytest.mark.usefixtures("restore")
@pytest.mark.parametrize("challenger", ["sleepy", "failing"])
def test_shadow_never_touches_the_caller(served: Served, challenger: str) -> None:
    v1, shadow = served.versions["v1"], served.versions[challenger]
    with httpx.Client() as client:
        baseline = _predict(client, served, BIKE, bike_full_row(9))
        served.deploy(TrafficSplit(model=BIKE, champion=v1, challenger=shadow, mode="shadow"))
        started = time.perf_counter()
        answers = [_predict(client, served, BIKE, bike_full_row(9)) for _ in range(3)]
        elapsed = time.perf_counter() - started
    # The sleepy challenger takes 2 s per request: the caller must not wait for it.
    assert elapsed < 1.5, elapsed
    for answer in answers:
        assert (answer["model_version"], answer["route"]) == (v1, "champion")
        assert answer["predictions"] == baseline["predictions"]
    paired = {a["id"] for a in answers}
    mirrors = wait_events(
        served.settings,
        lambda e: e["data"].get("paired_prediction_id") in paired,
        3,
        timeout=20,
    )
    for event in mirrors.values():
        data = event["data"]
        assert (data["route"], data["version"]) == ("shadow", shadow)
        if challenger == "failing":
            assert data["status"] == "error" and "challenger exploded" in data["error"]
        else:
            assert data["status"] == "ok"
            assert data["outputs"]["prediction"] == pytest.approx(baseline["predictions"][0])
