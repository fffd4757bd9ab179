"""The feedback routes on an app assembled from the router: validation of a partially valid
batch, then quality and prediction queries on what the consumer joined, and a rebuild."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from loopstack.core.events import EventLog, Publisher
from loopstack.core.events.topics import PREDICTIONS
from loopstack.monitoring.feedback.consumer import FeedbackConsumer

from tests.monitoring.feedback.builders import bike_rows, bike_scenario, iso
from tests.monitoring.feedback.test_join import append


def test_partial_batch_is_published_item_by_item_and_queries_see_the_join(
    client: TestClient, event_log: EventLog, publisher: Publisher, consumer: FeedbackConsumer
) -> None:
    scenario = bike_scenario(n=40)
    append(event_log, PREDICTIONS, scenario.predictions)
    consumer.drain()
    rows = bike_rows(40, start=500)
    observed = iso(rows["event_timestamp"].iloc[-1].to_pydatetime() + timedelta(hours=2))
    items = [
        {"prediction_id": f"bike-{i}", "outcome": int(rows["bikers"][i]), "observed_at": observed}
        for i in range(0, 30)
    ]
    hour = rows["event_timestamp"][30].to_pydatetime()
    items += [
        {
            "model": "bike-demand",
            "entity_key": {"city_id": "dc"},
            "event_time": iso(hour),
            "outcome": int(rows["bikers"][30]),
            "observed_at": observed,
        },
        {"prediction_id": "bike-3", "outcome": 999, "observed_at": observed, "source": "human"},
        {"prediction_id": "bike-4", "outcome": 5},  # no observed_at
        {"prediction_id": "bike-5", "outcome": "many", "observed_at": observed},
        {"prediction_id": "bike-6", "outcome": 5, "observed_at": observed, "source": "robot"},
        {
            "entity_key": {"city_id": "dc"},
            "event_time": iso(hour),
            "outcome": 1,
            "observed_at": observed,
        },  # no model
        "not an object",
    ]
    answer = client.post("/v1/feedback", json={"items": items})
    assert answer.status_code == 207, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (32, 5)
    reasons = {i["index"]: i["reason"] for i in body["items"] if i["status"] == "rejected"}
    assert "observed_at" in reasons[32] and "not a number" in reasons[33]
    assert "system or human" in reasons[34] and "needs `model`" in reasons[35]
    assert "object" in reasons[36]

    nothing = client.post("/v1/feedback", json=[{"prediction_id": "x", "outcome": None}])
    assert nothing.status_code == 422
    assert nothing.json()["type"] == "FeedbackRejected" and nothing.json()["items"]
    assert client.post("/v1/feedback", json=[]).status_code == 400

    assert publisher.flush(10) == 0
    consumer.drain()
    one = client.get("/v1/predictions/bike-3").json()
    assert one["version"] == "1" and one["route"] == "champion"
    assert one["outcome"]["value"] == 999 and one["outcome"]["source"] == "human"
    assert one["inputs"]["season"] in (1, 2, 3, 4) and one["entity_key"] == {"city_id": "dc"}
    shadow = client.get("/v1/predictions/bike-3-shadow").json()
    assert shadow["outcome"]["value"] == 999 and shadow["route"] == "shadow"
    by_entity = client.get("/v1/predictions/bike-30").json()
    assert by_entity["outcome"]["value"] == int(rows["bikers"][30])
    missing = client.get("/v1/predictions/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]

    seen: list[str] = []
    cursor = None
    while True:
        page = client.get(
            "/v1/predictions",
            params={
                "model": "bike-demand",
                "route": "champion",
                "has_outcome": True,
                "limit": 7,
                **({"cursor": cursor} if cursor else {}),
            },
        ).json()
        seen += [p["prediction_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 31
    waiting = client.get(
        "/v1/predictions",
        params={"model": "bike-demand", "version": "2", "has_outcome": False, "limit": 100},
    ).json()
    assert len(waiting["items"]) == 9
    assert client.get("/v1/predictions", params={"cursor": "garbage"}).status_code == 400

    quality = client.get("/v1/models/bike-demand/quality").json()
    windows = {(w["version"], w["route"], w["window"]) for w in quality["windows"]}
    assert windows == {(v, r, k) for v, r in (("1", "champion"), ("2", "shadow")) for k in range(3)}
    first = quality["windows"][0]
    assert set(first["metrics"]) >= {"rmse", "mae", "mape", "count", "override_rate"}
    assert set(first["segments"]) == {"season", "weathersit"}
    only = client.get(
        "/v1/models/bike-demand/quality",
        params={"route": "shadow", "segment": "weathersit", "last": 1},
    ).json()
    assert len(only["windows"]) == 1 and set(only["windows"][0]["segments"]) == {"weathersit"}
    assert {j["joined"] for j in quality["joined"]} == {31}

    rebuilt = client.post("/v1/feedback/rebuild").json()
    assert rebuilt["applied"] == 80 + 32 and rebuilt["skipped"] == 0
    again = client.get("/v1/models/bike-demand/quality").json()
    strip = [{k: v for k, v in w.items() if k != "closed_at"} for w in again["windows"]]
    assert strip == [{k: v for k, v in w.items() if k != "closed_at"} for w in quality["windows"]]
