"""Explanations on request: SHAP contributions on v1, v2 REST and gRPC, logged with the prediction,
and `GET /v1/predictions/{id}/why` (and `loopstack why`) joining them with lineage and outcome.

The served versions were registered with a reference sample (like the train pipeline's), which is
the explainer's background. The first explanation of the server process loads shap (seconds).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import orjson
import pytest
import typer
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from loopstack.api.app import create_app
from loopstack.api.services import Services
from loopstack.cli.why import why
from loopstack.core.events import open_event_log
from loopstack.core.settings import Settings
from loopstack.monitoring.feedback import ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.serving.errors import BadRequest, ExplanationUnavailable
from loopstack.serving.explain import Explainers, explain_requested
from loopstack.serving.loader import LoadedVersion, Scores
from loopstack.serving.schema import Column, ModelSchema
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.servers import asgi_server

from .conftest import BIKE, BIKE_FEATURES, CREDIT, Served, bike_full_row, bike_row

pytestmark = pytest.mark.integration

SLOW = 180.0  # the first explanation of the server loads shap and compiles its kernels
BIKE_FIELDS = set(bike_full_row())
V1 = f"/v1/models/{BIKE}:predict"


def _check(explanation: dict[str, Any], answered: float, fields: set[str], k: int = 5) -> None:
    """Top k by |contribution|, real input fields, and base + contributions = the answer."""
    contributions = explanation["contributions"]
    assert len(contributions) == min(k, len(fields))
    assert {c["feature"] for c in contributions} <= fields
    sizes = [abs(c["contribution"]) for c in contributions]
    assert sizes == sorted(sizes, reverse=True)
    total = explanation["base_value"] + sum(c["contribution"] for c in contributions)
    assert total + explanation["others"] == pytest.approx(explanation["output_value"], rel=1e-6)
    assert explanation["output_value"] == pytest.approx(answered, rel=1e-9)


def _v2_tensor(name: str, value: Any) -> dict[str, Any]:
    datatype = "BYTES" if isinstance(value, str) else "INT64" if isinstance(value, int) else "FP64"
    return {"name": name, "datatype": datatype, "shape": [1], "data": [value]}


def test_v1_explains_each_instance_with_feast_features_and_logs_it(served: Served) -> None:
    body = {"instances": [{**bike_row(8), "city_id": "dc"}, {**bike_row(17), "city_id": "dc"}]}
    answer = httpx.post(f"{served.rest}{V1}?explain=true", json=body, timeout=SLOW)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    explanations = got["explanations"]
    assert len(explanations) == 2
    for explanation, prediction in zip(explanations, got["predictions"], strict=True):
        assert explanation["output"] == "prediction" and explanation["held"] == []
        assert explanation["method"] == "shap-permutation"
        assert explanation["background"] == {"source": "reference", "rows": 50}
        _check(explanation, prediction, BIKE_FIELDS)
    # The two hours differ in `hr` only: it must be what moves them apart.
    assert "hr" in {c["feature"] for c in explanations[0]["contributions"]}
    events = served.events(set(got["prediction_ids"]))
    for pid, explanation in zip(got["prediction_ids"], explanations, strict=True):
        assert events[pid]["data"]["explanation"] == explanation


def test_v2_rest_and_grpc_answer_explanations_in_parameters(served: Served) -> None:
    body = {"inputs": [_v2_tensor("customer_id", 8077)], "parameters": {"explain": True}}
    answer = httpx.post(f"{served.rest}/v2/models/{CREDIT}/infer", json=body, timeout=SLOW)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    [explanation] = json.loads(got["parameters"]["explanations"])
    probabilities = next(o for o in got["outputs"] if o["name"] == "probabilities")["data"]
    label = next(o for o in got["outputs"] if o["name"] == "prediction")["data"][0]
    assert explanation["output"] == f"probability of {label}"
    assert explanation["method"] == "shap-exact"  # three fields: every coalition is evaluated
    # The reference leaves the sensitive `income` out: it is held, its effect in the base value.
    assert explanation["held"] == ["income"] and explanation["others"] == 0
    _check(explanation, max(probabilities), {"student", "balance"}, k=2)
    by_name = {c["feature"]: c["value"] for c in explanation["contributions"]}
    assert by_name["student"] in ("Yes", "No") and isinstance(by_name["balance"], float)

    request = pb.ModelInferRequest(model_name=BIKE)
    for name, value in bike_full_row().items():
        tensor = request.inputs.add(name=name, shape=[1])
        if isinstance(value, str):
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.append(value.encode())
        else:
            tensor.datatype = "FP64"
            tensor.contents.fp64_contents.append(value)
    request.parameters["explain"].bool_param = True
    with grpc.insecure_channel(served.grpc) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=SLOW)
    [explanation] = json.loads(response.parameters["explanations"].string_param)
    _check(explanation, response.outputs[0].contents.fp64_contents[0], BIKE_FIELDS)


def test_without_explain_nothing_is_explained(served: Served) -> None:
    row = {"instances": [bike_full_row()]}
    plain = httpx.post(f"{served.rest}{V1}", json=row).json()
    off = httpx.post(f"{served.rest}{V1}?explain=false", json=row).json()
    assert "explanations" not in plain and "explanations" not in off
    v2 = httpx.post(
        f"{served.rest}/v2/models/{BIKE}/infer",
        json={"inputs": [_v2_tensor(k, v) for k, v in bike_full_row().items()]},
    ).json()
    assert "explanations" not in v2["parameters"]
    events = served.events({plain["id"], off["id"]})
    assert all("explanation" not in e["data"] for e in events.values())


def test_explain_parameter_and_missing_background_without_a_server() -> None:
    for sent, asked in ((True, True), ("TRUE", True), ("0", False), (False, False)):
        parameters = {"explain": sent, "city_id": "dc"}
        assert explain_requested(parameters) is asked and parameters == {"city_id": "dc"}
    assert explain_requested({}) is False
    with pytest.raises(BadRequest, match="must be true or false, got None"):
        explain_requested({"explain": None})
    schema = ModelSchema([Column("x", "double", "FP64", "float", "float64")])
    version = LoadedVersion("m", "7", object(), schema, None, "FP64")
    frame = schema.frame({"x": [1.0]}, 1)
    with pytest.raises(ExplanationUnavailable, match="no reference sample") as caught:
        Explainers(lambda _m, _v: None).explain(version, frame, Scores([1.0]))
    assert caught.value.http_status == 409 and "pipeline run train" in caught.value.message


def test_a_bad_explain_value_is_a_400_with_the_reason(served: Served) -> None:
    row = {"instances": [bike_full_row()]}
    v1 = httpx.post(f"{served.rest}{V1}?explain=maybe", json=row)
    assert v1.status_code == 400
    assert v1.json()["error"] == "parameter 'explain' must be true or false, got 'maybe'"
    v2 = httpx.post(
        f"{served.rest}/v2/models/{BIKE}/infer",
        json={
            "inputs": [_v2_tensor(k, v) for k, v in bike_full_row().items()],
            "parameters": {"explain": 3},
        },
    )
    assert v2.status_code == 400 and "'explain' must be true or false" in v2.json()["error"]


@pytest.fixture
def api(served: Served) -> Iterator[tuple[str, Services]]:
    """The management API over the serving tests' state (read model, registry), on HTTP."""
    services = Services(served.settings)
    app = create_app(served.settings, services=services)
    with asgi_server(app) as url:
        yield url, services


def _project(settings: Settings) -> None:
    """Apply what the feedback consumer process would: the predictions and outcomes so far."""
    log = open_event_log(settings)
    read_model = ReadModel.from_settings(settings)
    consumer = FeedbackConsumer(settings, log, read_model)
    try:
        consumer.drain()
    finally:
        consumer.close()
        read_model.close()
        log.close()


def test_why_joins_inputs_features_lineage_explanation_and_outcome(
    served: Served, api: tuple[str, Services]
) -> None:
    url, services = api
    body = {"instances": [{**bike_row(9), "city_id": "dc"}]}
    explained = httpx.post(f"{served.rest}{V1}?explain=true", json=body, timeout=SLOW).json()
    plain = httpx.post(f"{served.rest}{V1}", json=body).json()
    pid = explained["id"]
    served.events({pid, plain["id"]})
    observed = datetime.now(UTC).isoformat()
    sent = httpx.post(
        f"{url}/v1/feedback", json=[{"prediction_id": pid, "outcome": 123, "observed_at": observed}]
    )
    assert sent.status_code == 200, sent.text
    assert services.publisher.flush(10) == 0
    _project(served.settings)

    why_ = httpx.get(f"{url}/v1/predictions/{pid}/why").json()
    version = served.versions["v1"]
    run_id = (
        MlflowClient(served.settings.mlflow_tracking_uri).get_model_version(BIKE, version).run_id
    )
    assert why_["model"] == {"name": BIKE, "version": version, "run_id": run_id, "lineage": {}}
    assert why_["route"] == "champion" and why_["status"] == "ok"
    assert set(why_["inputs"]) == BIKE_FIELDS and why_["entity_key"] == {"city_id": "dc"}
    features = why_["features"]
    assert features["feature_service"] == "bike_demand_v1"
    assert {f["feature"] for f in features["values"]} == set(BIKE_FEATURES)
    assert all(f["event_timestamp"] for f in features["values"])
    assert why_["output"]["prediction"] == pytest.approx(explained["predictions"][0])
    assert why_["explanation"] == explained["explanations"][0]
    assert why_["explanation_note"] is None
    assert why_["outcome"]["value"] == 123 and why_["outcome"]["source"] == "system"

    unexplained = httpx.get(f"{url}/v1/predictions/{plain['id']}/why").json()
    assert unexplained["explanation"] is None and unexplained["outcome"] is None
    assert "explain=true" in unexplained["explanation_note"]
    missing = httpx.get(f"{url}/v1/predictions/no-such-id/why")
    assert missing.status_code == 404 and "no-such-id" in missing.json()["error"]

    cli = typer.Typer()
    settings = served.settings.model_copy(
        update={"api": served.settings.api.model_copy(update={"url": url})}
    )

    @cli.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = settings

    cli.command("why")(why)
    shown = CliRunner().invoke(cli, ["why", pid], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    top = explained["explanations"][0]["contributions"][0]["feature"]
    assert f"{BIKE} v{version}" in shown.output and top in shown.output
    assert "outcome: 123" in shown.output and "bikers_last_hour" in shown.output
    as_json = CliRunner().invoke(cli, ["why", pid, "--json"])
    assert orjson.loads(as_json.output)["explanation"] == why_["explanation"]
    gone = CliRunner().invoke(cli, ["why", "no-such-id"])
    assert gone.exit_code == 3 and "no-such-id" in gone.output
