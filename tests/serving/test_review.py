"""Low-confidence answers are flagged `needs_review` on v1, v2 REST and gRPC, and in their events.

The served credit spec (a copy of `models/credit-default/model.yaml`) sets
`review.min_margin: 0.2`: a row whose two class probabilities are within 0.2 needs review.
"""

from __future__ import annotations

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from loopstack.core.modelspec import ReviewSpec
from loopstack.serving.loader import Scores
from loopstack.serving.review import review_flags

from .conftest import BIKE, CREDIT, Served, bike_full_row

pytestmark = pytest.mark.integration

MIN_MARGIN = 0.2
BALANCES = [float(b) for b in range(0, 3001, 50)]


def _rows(balances: list[float]) -> list[dict[str, object]]:
    return [{"student": "No", "balance": b, "income": 40_000.0} for b in balances]


def test_v1_flags_exactly_the_rows_under_the_margin_and_logs_them(served: Served) -> None:
    body = {"instances": _rows(BALANCES)}
    got = httpx.post(f"{served.rest}/v1/models/{CREDIT}:predict", json=body).json()
    margins = [abs(p[1] - p[0]) for p in got["probabilities"]]
    assert got["needs_review"] == [m < MIN_MARGIN for m in margins]
    assert any(got["needs_review"]) and not all(got["needs_review"])  # the sweep crosses 0.5
    events = served.events(set(got["prediction_ids"]))
    for pid, flag, margin in zip(got["prediction_ids"], got["needs_review"], margins, strict=True):
        review = events[pid]["data"]["review"]
        assert review["needs_review"] is flag and review["margin"] == pytest.approx(
            margin, abs=1e-6
        )
        assert review.get("reasons") == (["low_margin"] if flag else None)
    metrics = httpx.get(f"{served.rest}/metrics").text
    assert f'loopstack_serving_needs_review_total{{model="{CREDIT}"' in metrics


def test_v2_rest_and_grpc_say_needs_review_in_parameters(served: Served) -> None:
    sweep = httpx.post(
        f"{served.rest}/v1/models/{CREDIT}:predict", json={"instances": _rows(BALANCES)}
    ).json()
    unsure = BALANCES[sweep["needs_review"].index(True)]
    sure = BALANCES[0]

    def v2(balance: float) -> dict[str, object]:
        inputs = [
            {"name": "student", "datatype": "BYTES", "shape": [1], "data": ["No"]},
            {"name": "balance", "datatype": "FP64", "shape": [1], "data": [balance]},
            {"name": "income", "datatype": "FP64", "shape": [1], "data": [40_000.0]},
        ]
        answer = httpx.post(f"{served.rest}/v2/models/{CREDIT}/infer", json={"inputs": inputs})
        assert answer.status_code == 200, answer.text
        return answer.json()["parameters"]

    flagged, confident = v2(unsure), v2(sure)
    assert flagged["needs_review"] is True
    assert flagged["needs_review_ids"] == flagged["prediction_ids"]
    assert confident["needs_review"] is False and "needs_review_ids" not in confident

    request = pb.ModelInferRequest(model_name=CREDIT)
    request.inputs.add(name="student", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"No"
    )
    request.inputs.add(name="balance", datatype="FP64", shape=[1]).contents.fp64_contents.append(
        unsure
    )
    request.inputs.add(name="income", datatype="FP64", shape=[1]).contents.fp64_contents.append(
        40_000.0
    )
    with grpc.insecure_channel(served.grpc) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=30)
    assert response.parameters["needs_review"].bool_param is True
    assert (
        response.parameters["needs_review_ids"].string_param
        == response.parameters["prediction_id"].string_param
    )


def test_a_model_without_a_review_margin_says_nothing(served: Served) -> None:
    got = httpx.post(
        f"{served.rest}/v1/models/{BIKE}:predict", json={"instances": [bike_full_row()]}
    ).json()
    assert "needs_review" not in got
    event = served.events({got["id"]})[got["id"]]["data"]
    assert "review" not in event


def test_margin_is_the_gap_between_the_two_most_likely_classes() -> None:
    scores = Scores(predictions=[2, 0, 1], probabilities=[[0.1, 0.35, 0.55], [0.9, 0.05, 0.05],
                                                          [0.3, 0.4, 0.3]])  # fmt: skip
    flags = review_flags(ReviewSpec(min_margin=0.25), scores)
    assert flags is not None
    assert flags.margins == pytest.approx([0.2, 0.85, 0.1])
    assert flags.needs_review == [True, False, True]
    assert review_flags(ReviewSpec(), scores) is None  # no margin configured
    assert review_flags(ReviewSpec(min_margin=0.25), Scores(predictions=[1.5])) is None
