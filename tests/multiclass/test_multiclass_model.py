"""A five-class model of a user's project, end to end: trained through the CLI, served with its
class probabilities to the official clients, outcomes fed back and measured, drift watched on
the predicted class.

`seattle-sky` (in tests/own_model/project, with `seattle-weather`) predicts the day's weather
in Seattle (drizzle, rain, sun, snow, fog) from the day's readings: real NOAA data from the
`vega-datasets` test dependency. It trains on 2012-2013, then six weeks of 2014 are replayed
with their event times as request times and their outcomes sent back through the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import to_http_parameters
from loopstack.client import LoopstackClient
from loopstack.core.errors import NotFound
from sklearn import metrics as skm

from tests.conftest import run_cli, running_stack, settings_from
from tests.own_model.data import CITY, lay_out_project
from tests.own_model.data import SKY_MODEL as MODEL
from tests.own_model.data import SKY_READINGS as READINGS
from tests.own_model.stack import materialize_facts, project_env, train_first_version, wait
from tests.triton_client import triton_calls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

LABELS = (datetime(2012, 1, 1, tzinfo=UTC), datetime(2014, 1, 1, tzinfo=UTC))
"""The training window: the label file holds these days."""
REPLAYED = (datetime(2014, 1, 1, tzinfo=UTC), datetime(2014, 2, 12, tzinfo=UTC))
"""Six weeks served after training: three quality windows and drift windows of 14 days."""
CLASSES = ["sun", "rain", "drizzle", "fog", "snow"]
"""The spec's class order, which every answer's probability columns follow."""
WINDOW = 14


@dataclass
class Served:
    """The stack, the replayed days with their answers, and clients."""

    env: dict[str, str]
    days: pd.DataFrame
    """The replayed days: readings, true `weather`, `prediction_id`, `prediction`, `proba`."""
    client: LoopstackClient
    http: httpx.Client
    rest: str
    grpc: str


def _readings(row: dict[str, Any]) -> dict[str, Any]:
    return {"city_id": CITY, **{f: float(row[f]) for f in READINGS}}


def _iso(moment: Any) -> str:
    return pd.Timestamp(moment).isoformat()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Train the first version through the CLI, let the loop deploy it, replay six weeks."""
    base = tmp_path_factory.mktemp("multiclass")
    project = base / "project"
    rows = lay_out_project(project, LABELS)
    env = project_env(project, MODEL)  # the loop deploys the first version
    with running_stack(env) as stack:
        settings = settings_from(env)
        client = LoopstackClient.from_settings(settings)
        http = httpx.Client(
            base_url=f"http://{settings.host}:{settings.serving.rest_port}", timeout=30
        )
        try:
            materialize_facts(env)
            train_first_version(env, MODEL, LABELS)
            days = rows[
                (rows["event_timestamp"] >= REPLAYED[0]) & (rows["event_timestamp"] < REPLAYED[1])
            ].reset_index(drop=True)
            ids, predicted, proba = [], [], []
            for row in days.to_dict(orient="records"):
                answer = http.post(
                    f"/v1/models/{MODEL}:predict",
                    json={"instances": [_readings(row)],
                          "parameters": {"request_time": _iso(row["event_timestamp"])}},
                )  # fmt: skip
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["classes"] == CLASSES
                ids.append(body["prediction_ids"][0])
                predicted.append(body["predictions"][0])
                proba.append(body["probabilities"][0])
            days = days.assign(prediction_id=ids, prediction=predicted, proba=proba)
            yield Served(
                env, days, client, http,
                f"{settings.host}:{settings.serving.rest_port}",
                f"{settings.host}:{settings.serving.grpc_port}",
            )  # fmt: skip
        finally:
            http.close()
            client.close()
            del stack


def test_training_records_the_classes_and_multiclass_metrics(served: Served) -> None:
    lineage = served.client.get(f"/v1/models/{MODEL}/versions/champion/lineage")["lineage"]
    assert lineage["classes"] == CLASSES
    assert set(lineage["metrics"]) >= {"accuracy", "macro_f1", "log_loss"}
    assert "auc" not in lineage["metrics"]
    # Answers are probabilities over the five classes, and the label is the likeliest of them.
    proba = np.asarray(list(served.days["proba"]))
    assert proba.shape == (len(served.days), 5) and np.allclose(proba.sum(axis=1), 1)
    assert list(served.days["prediction"]) == [CLASSES[i] for i in proba.argmax(axis=1)]


def _kserve_request(row: dict[str, Any]) -> InferRequest:
    inputs = []
    for name, value in _readings(row).items():
        text = isinstance(value, str)
        tensor = InferInput(name, [1], "BYTES" if text else "FP64")
        tensor.set_data_from_numpy(np.array([value], dtype=object if text else np.float64))
        inputs.append(tensor)
    # The replayed day's time: the city's facts are fresh then (their TTL is checked).
    at = {"request_time": _iso(row["event_timestamp"])}
    return InferRequest(model_name=MODEL, infer_inputs=inputs, request_id="sky-1", parameters=at)


def test_every_protocol_answers_the_class_probabilities(served: Served) -> None:
    row = served.days.iloc[0].to_dict()
    expected = np.asarray(row["proba"])

    async def kserve() -> list[Any]:
        rest = InferenceRESTClient(RESTConfig(protocol="v2"))
        grpc = InferenceGRPCClient(served.grpc)
        try:
            return [
                await rest.infer(f"http://{served.rest}", _kserve_request(row), model_name=MODEL),
                await grpc.infer(_kserve_request(row)),
            ]
        finally:
            await rest.close()
            await grpc.close()

    for response in asyncio.run(kserve()):
        outputs = {o.name: o for o in response.outputs}
        assert outputs["probabilities"].shape == [1, 5]
        assert np.allclose(outputs["probabilities"].as_numpy().reshape(-1), expected)
        classes = to_http_parameters(outputs["probabilities"].parameters)["classes"]
        assert classes.split(",") == CLASSES
        label = outputs["prediction"].as_numpy().reshape(-1)[0]
        assert (label.decode() if isinstance(label, bytes) else label) == row["prediction"]

    inputs = [{"name": k, "datatype": "BYTES" if isinstance(v, str) else "FP64", "shape": [1],
               "data": [v]} for k, v in _readings(row).items()]  # fmt: skip
    ask = {"kind": "infer", "model": MODEL, "inputs": inputs, "id": "triton",
           "outputs": ["probabilities"],
           "parameters": {"request_time": _iso(row["event_timestamp"])}}  # fmt: skip
    protocols = ("http", "grpc")
    answers = triton_calls(served.rest, served.grpc, [{**ask, "protocol": p} for p in protocols])
    for protocol, answer in zip(protocols, answers, strict=True):
        assert list(answer["outputs"]) == ["probabilities"], protocol  # only the output asked for
        classes = answer["output_parameters"]["probabilities"]["classes"]
        assert answer["shapes"]["probabilities"] == [1, 5], protocol
        assert classes.split(",") == CLASSES, protocol
        assert np.allclose(answer["outputs"]["probabilities"], expected), protocol


def _joined(served: Served, pid: str) -> bool:
    try:
        return served.client.get(f"/v1/predictions/{pid}").get("outcome") is not None
    except NotFound:
        return False


def test_outcomes_give_live_multiclass_quality_and_a_bad_class_is_refused(served: Served) -> None:
    days = served.days
    items = [
        {"prediction_id": pid, "outcome": weather,
         "observed_at": _iso(at + timedelta(days=1))}
        for pid, weather, at in zip(days["prediction_id"], days["weather"],
                                    days["event_timestamp"], strict=True)
    ]  # fmt: skip
    hail = {"prediction_id": items[0]["prediction_id"], "outcome": "hail",
            "observed_at": items[0]["observed_at"]}  # fmt: skip
    api = f"{served.client.base_url}/v1/feedback"
    sent = httpx.post(api, json={"items": [*items, hail]}, timeout=30)
    assert sent.status_code == 207, sent.text
    rejected = [i for i in sent.json()["items"] if i["status"] == "rejected"]
    assert [i["index"] for i in rejected] == [len(items)]
    assert "'hail' is not a class of model 'seattle-sky'" in rejected[0]["reason"]
    assert "'sun', 'rain', 'drizzle', 'fog', 'snow'" in rejected[0]["reason"]
    alone = httpx.post(api, json=[hail], timeout=30)
    assert 400 <= alone.status_code < 500 and "allowed values" in alone.json()["error"]

    wait("the outcomes to be joined", lambda: _joined(served, items[-1]["prediction_id"]))

    # A window is listed once its outcomes joined, and has metrics once the consumer computed it.
    def computed() -> dict[str, Any] | None:
        q = served.client.get(f"/v1/models/{MODEL}/quality", route="champion")
        return q if [bool(w["metrics"]) for w in q["windows"]] == [True] * 3 else None

    quality = wait("three computed quality windows", computed)
    for window in quality["windows"]:
        rows = days.iloc[window["window"] * WINDOW : (window["window"] + 1) * WINDOW]
        truth, proba = list(rows["weather"]), np.asarray(list(rows["proba"]))
        hard = [CLASSES[i] for i in proba.argmax(axis=1)]
        metrics = window["metrics"]
        assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(truth, hard))
        assert metrics["macro_f1"] == pytest.approx(skm.f1_score(truth, hard, average="macro"))
        index = [CLASSES.index(t) for t in truth]
        assert metrics["log_loss"] == pytest.approx(
            skm.log_loss(index, proba, labels=list(range(5))), rel=1e-6
        )
    shown = run_cli(served.env, "quality", MODEL)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert {"accuracy", "macro_f1", "log_loss"} <= set(shown.stdout.split()), shown.stdout


def test_a_reviewer_decides_among_the_classes(served: Served) -> None:
    # The decision is the true outcome: the quality windows stay what the other test checked.
    pending = served.client.get("/v1/reviews", model=MODEL)["reviews"]
    assert pending, "no answer of the replay was closer than 0.2 between its top two classes"
    pid = pending[0]["prediction_id"]
    day = served.days.set_index("prediction_id").loc[pid]
    top = sorted(day["proba"], reverse=True)
    assert top[0] - top[1] < 0.2
    api = f"{served.client.base_url}/v1/reviews/{pid}/decision"
    refused = httpx.post(api, json={"outcome": "hail"}, timeout=30)
    assert refused.status_code == 400, refused.text
    assert "allowed values are 'sun', 'rain', 'drizzle', 'fog', 'snow'" in refused.json()["error"]
    assert httpx.post(api, json={"outcome": day["weather"]}, timeout=30).status_code == 200

    def decided() -> list[dict[str, Any]]:
        found = served.client.get("/v1/reviews", model=MODEL, status="decided")["reviews"]
        return [r for r in found if r["prediction_id"] == pid]

    entry = wait("the decision in the review queue", decided)[0]
    assert entry["decision"]["overridden"] == (day["weather"] != day["prediction"])


def test_drift_windows_watch_the_predicted_class(served: Served) -> None:
    windows = wait(
        "a reported drift window",
        lambda: [
            w for w in served.client.get(f"/v1/models/{MODEL}/drift")["windows"]
            if w["status"] == "ok"
        ],
    )  # fmt: skip
    tested = {f["feature"]: f for f in windows[-1]["features"]}
    assert "prediction" in tested, tested
    # The predicted class is a category: chi-squared, its effect Cramér's V (not a KS distance).
    assert tested["prediction"]["test"] == "chi2", tested["prediction"]
    assert tested["prediction"]["effect"] is not None
    assert {"precipitation", "temp_max", "temp_min", "wind"} <= set(tested)
