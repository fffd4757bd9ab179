"""The inference server's OIP v2 REST endpoints under schemathesis, over real HTTP: generated
requests (valid and invalid per the server's own OpenAPI) never get a 5xx, every 4xx says why,
and the server keeps answering."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .conftest import BIKE, CREDIT, Served

pytestmark = pytest.mark.integration

MODELS = (BIKE, CREDIT, "no-such-model")


def test_generated_v2_requests_get_no_5xx_and_every_4xx_has_a_reason(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.rest}/openapi.json")
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if op.path.startswith("/v2/models/{model_name}")
    ]
    assert {op.path for op in operations} >= {
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}",
    }
    seen: dict[int, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode), model=st.sampled_from(MODELS))
            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)  # fmt: skip
            def answers_sensibly(case: Any, model: str) -> None:
                case.path_parameters = {**(case.path_parameters or {}), "model_name": model}
                response = case.call(base_url=served.rest, timeout=30)
                where = f"{case.method} {case.formatted_path}: {response.text[:300]}"
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                assert response.status_code < 500, where
                if response.status_code >= 400:
                    error = response.json().get("error")
                    assert isinstance(error, str) and error.strip(), where

            try:
                answers_sensibly()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise  # only a bodiless operation may have no invalid request to make
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0 and seen.get(404, 0) > 0, seen
    # Still serving after all of that.
    ready = httpx.get(f"{served.rest}/v2/models/{CREDIT}/ready", verify=served.verify)
    assert ready.status_code == 200
