"""Adaptive batching: requests queued behind a busy version share one model call, and each
caller still gets exactly its own rows' answers (or its own error)."""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from loopstack.serving.batching import AdaptiveBatcher
from loopstack.serving.errors import BadRequest
from loopstack.serving.loader import LoadedVersion, Scores
from loopstack.serving.schema import ModelSchema
from loopstack.serving.traffic import TrafficSplit
from mlflow.types import ColSpec, Schema
from sklearn.linear_model import LogisticRegression

from .conftest import BIKE, Served, bike_full_row
from .test_protocols import _v2_inputs


class _RejectsNegativeBalance(LogisticRegression):
    """A fitted logistic regression that rejects negative balances (a model-side failure)."""

    def predict_proba(self, x: Any) -> Any:
        if (x["balance"] < 0).any():
            raise ValueError("negative balance")
        return super().predict_proba(x)


def _version() -> LoadedVersion:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"balance": rng.normal(1000, 400, 300), "income": rng.normal(4e4, 1e4, 300)})
    estimator = _RejectsNegativeBalance().fit(x, (x["balance"] > 1100).astype(int))
    schema = ModelSchema.from_signature(
        Schema([ColSpec("double", "balance"), ColSpec("double", "income")]), "credit"
    )
    return LoadedVersion("credit", "1", estimator, schema, [0, 1], "INT64")


def _request(version: LoadedVersion, balances: list[float]) -> tuple[dict[str, list[Any]], int]:
    rows = len(balances)
    return version.schema.check({"balance": balances, "income": [40_000.0] * rows}, rows), rows


def _alone(version: LoadedVersion, balances: list[float]) -> Scores:
    return version.score(
        version.schema.frame(
            {"balance": balances, "income": [40_000.0] * len(balances)}, len(balances)
        )
    )


async def _score_all(
    batcher: AdaptiveBatcher, version: LoadedVersion, requests: list[list[float]]
) -> list[Any]:
    calls = [batcher.score(version, *_request(version, balances)) for balances in requests]
    return await asyncio.gather(*calls, return_exceptions=True)


def _batcher(calls: list[int], max_rows: int = 256) -> AdaptiveBatcher:
    def score(version: LoadedVersion, frame: pd.DataFrame) -> Scores:
        try:
            return version.score(frame)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc

    return AdaptiveBatcher(score, max_rows, lambda _, rows: calls.append(rows))


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    version, calls = _version(), list[int]()
    batcher = _batcher(calls)
    requests = [[500.0], [1500.0, 900.0], [1200.0], [2000.0, 100.0, 1100.0]]
    try:
        answers = asyncio.run(_score_all(batcher, version, requests))
    finally:
        batcher.close()
    assert calls == [7]  # one model call for the seven rows of four callers
    for balances, answer in zip(requests, answers, strict=True):
        alone = _alone(version, balances)
        assert answer.predictions == alone.predictions
        np.testing.assert_allclose(answer.probabilities, alone.probabilities)


def test_a_failing_request_fails_alone_and_the_others_are_answered() -> None:
    version, calls = _version(), list[int]()
    batcher = _batcher(calls)
    requests = [[500.0], [-1.0], [1500.0]]
    try:
        answers = asyncio.run(_score_all(batcher, version, requests))
    finally:
        batcher.close()
    assert calls == [3, 1, 1, 1]  # the batch failed, then each request was scored alone
    assert isinstance(answers[1], BadRequest) and "negative balance" in str(answers[1])
    for i in (0, 2):
        assert answers[i].predictions == _alone(version, requests[i]).predictions


def test_a_batch_never_exceeds_max_rows_and_one_disables_batching() -> None:
    version = _version()
    requests = [[100.0 * i] for i in range(1, 6)]
    for max_rows, expected in ((3, [3, 2]), (1, [1, 1, 1, 1, 1])):
        calls: list[int] = []
        batcher = _batcher(calls, max_rows)
        try:
            answers = asyncio.run(_score_all(batcher, version, requests))
        finally:
            batcher.close()
        assert calls == expected
        assert [a.predictions for a in answers] == [
            _alone(version, r).predictions for r in requests
        ]


@pytest.mark.integration
@pytest.mark.usefixtures("restore")
def test_requests_behind_a_busy_version_are_answered_by_one_call(served: Served) -> None:
    """Six callers of a version that takes 2 s per call wait for two calls, not six."""
    v1, sleepy = served.versions["v1"], served.versions["sleepy"]
    served.deploy(TrafficSplit(model=BIKE, champion=v1, challenger=sleepy, mode="shadow"))
    rows = [bike_full_row(hour) for hour in range(6)]

    def infer(version: str, row: dict[str, Any]) -> float:
        url = f"{served.rest}/v2/models/{BIKE}/versions/{version}/infer"
        answer = httpx.post(url, json={"inputs": _v2_inputs(row)}, timeout=60)
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        return float(outputs["prediction"][0])

    before = _calls(served, sleepy)
    started = time.perf_counter()
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(infer, sleepy, rows[0])
        time.sleep(0.5)  # the first call is running: the next five queue behind it
        rest = [pool.submit(infer, sleepy, row) for row in rows[1:]]
        got = [first.result(), *(f.result() for f in rest)]
    elapsed = time.perf_counter() - started
    after = _calls(served, sleepy)
    assert (after[0] - before[0], after[1] - before[1]) == (2, 6)  # two calls, six rows
    assert elapsed < 8, elapsed  # alone, the six would take 12 s
    # The sleepy version answers like v1: every caller got its own row's answer.
    assert got == pytest.approx([infer(v1, row) for row in rows])


def _calls(served: Served, version: str) -> tuple[int, int]:
    """Model calls and rows scored so far by a version of serving-bike (`/metrics`)."""
    text = httpx.get(f"{served.rest}/metrics", timeout=5).text
    labels = rf'\{{model="{BIKE}",version="{version}"\}}'
    count = re.search(rf"loopstack_serving_batch_rows_count{labels} (\S+)", text)
    total = re.search(rf"loopstack_serving_batch_rows_sum{labels} (\S+)", text)
    return (int(float(count.group(1))), int(float(total.group(1)))) if count and total else (0, 0)
