"""The KServe resources of the runtime validate against the upstream CRDs and log to the ingest."""

from __future__ import annotations

import pytest
from loopstack.core.settings import Settings
from loopstack.serving.backends.kserve_resources import (
    RUNTIME_NAME,
    ingest_url,
    render_cluster_serving_runtime,
)
from loopstack.serving.backends.kubernetes import render_inference_service
from loopstack.serving.ingest import INGEST_PATH
from loopstack.serving.traffic import TrafficSplit

from tests.crds import validate_custom_resource


def test_cluster_serving_runtime_validates_and_runs_the_loopstack_server() -> None:
    runtime = render_cluster_serving_runtime(Settings())
    validate_custom_resource(runtime)
    container = runtime["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "loopstack.serving.server"]
    assert runtime["metadata"]["name"] == RUNTIME_NAME
    assert set(runtime["spec"]["protocolVersions"]) == {"v1", "v2", "grpc-v2"}


@pytest.mark.parametrize("mode", ["champion", "canary", "shadow"])
def test_inference_services_log_everything_to_the_ingest_endpoint(mode: str) -> None:
    extra: dict[str, object] = {} if mode == "champion" else {"challenger": "2"}
    if mode == "canary":
        extra["canary_percent"] = 20
    split = TrafficSplit(model="credit-default", champion="1", mode=mode, **extra)  # type: ignore[arg-type]
    settings = Settings()
    isvc = render_inference_service(split, settings)
    validate_custom_resource(isvc)
    predictor = isvc["spec"]["predictor"]
    assert predictor["logger"] == {"mode": "all", "url": ingest_url(settings)}
    assert ingest_url(settings).endswith(INGEST_PATH)
    assert predictor["model"]["resources"]["limits"]["cpu"]


def test_the_ingest_url_can_be_configured() -> None:
    settings = Settings(serving={"ingest_url": "http://ingest.example/loopstack/events/kserve"})
    assert ingest_url(settings) == "http://ingest.example/loopstack/events/kserve"
