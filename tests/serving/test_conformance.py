"""Open Inference Protocol conformance, checked with the official clients (tritonclient, KServe).

An unknown model or version is 404 / NOT_FOUND before the body is read; readiness and metadata
honour the version and carry `versions` and `platform`; server metadata lists only extensions
that answer; the server is not ready while a deployed version fails to load, and says why
(REST, gRPC, `loopstack status`, `loopstack traffic`), while the champion keeps answering.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import mlflow
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from loopstack.serving.backends.embedded import EmbeddedBackend
from loopstack.serving.errors import (
    ModelNotReady,
    ModelNotServed,
    UnsupportedModel,
    VersionNotServed,
)
from loopstack.serving.loader import LoadedVersion
from loopstack.serving.metadata import OIPStatus
from loopstack.serving.metrics import ServingMetrics
from loopstack.serving.runtime import ServingRuntime
from loopstack.serving.schema import ModelSchema
from loopstack.serving.traffic import TrafficSplit
from loopstack.serving.watcher import SplitWatcher
from mlflow.models import infer_signature
from mlflow.types import ColSpec, Schema
from prometheus_client import CollectorRegistry
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.conftest import Stack
from tests.triton_client import triton_calls

from .conftest import BIKE, Served, bike_full_row

UNKNOWN = "999"


# --- the readiness model, without a transport -------------------------------------------------
def _toy(model: str, version: str) -> LoadedVersion:
    schema = ModelSchema.from_signature(Schema([ColSpec("double", "x")]), model)
    return LoadedVersion(model, version, object(), schema, None, "FP64")


@pytest.fixture
def following(tmp_path: Path) -> Iterator[tuple[EmbeddedBackend, SplitWatcher, OIPStatus]]:
    """A watcher following an embedded backend's splits; version 2 was logged unsigned."""
    from loopstack.core.settings import Settings

    backend = EmbeddedBackend(Settings(project_dir=tmp_path, state_dir=tmp_path / "state"))

    def load(model: str, version: str) -> LoadedVersion:
        if version == "2":
            raise UnsupportedModel(f"{model} v2 was logged without a signature")
        return _toy(model, version)

    runtime = ServingRuntime(None, ServingMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    watcher = SplitWatcher(backend.store, runtime, load)
    try:
        yield backend, watcher, OIPStatus(runtime, watcher.readiness)
    finally:
        runtime.close()


def test_a_challenger_that_cannot_load_leaves_the_champion_answering_and_the_server_unready(
    following: tuple[EmbeddedBackend, SplitWatcher, OIPStatus],
) -> None:
    backend, watcher, status = following
    backend.deploy(TrafficSplit(model="m", champion="1"))
    assert not backend.deployment("m").ready  # type: ignore[union-attr]
    watcher.sync()
    assert status.server_not_ready() is None
    assert backend.deployment("m").ready  # type: ignore[union-attr]
    backend.deploy(TrafficSplit(model="m", champion="1", challenger="2", mode="shadow"))
    watcher.sync()
    reason = status.server_not_ready()
    assert reason is not None and "v2 (shadow challenger) failed to load" in reason
    assert "without a signature" in reason and "loopstack deploy m --version V --force" in reason
    status.check_ready("m", "1")  # the champion still answers
    assert status.resolve("m").version == "1"
    for version in (None, "2"):
        with pytest.raises(ModelNotReady, match="signature"):
            status.check_ready("m", version)
    with pytest.raises(VersionNotServed, match="served: 1, 2"):
        status.check_ready("m", UNKNOWN)
    with pytest.raises(ModelNotServed):
        status.resolve("nope", "1")
    shown = backend.deployment("m")
    assert shown is not None and not shown.ready and "without a signature" in shown.detail
    backend.deploy(TrafficSplit(model="m", champion="1"))  # withdrawn: ready again
    watcher.sync()
    assert status.server_not_ready() is None
    assert backend.deployment("m").ready  # type: ignore[union-attr]


def test_an_unservable_only_version_is_not_ready_with_the_reason_until_it_is_removed(
    following: tuple[EmbeddedBackend, SplitWatcher, OIPStatus],
) -> None:
    backend, watcher, status = following
    backend.deploy(TrafficSplit(model="ghost", champion="2"))
    watcher.sync()
    with pytest.raises(ModelNotReady, match="v2 \\(champion\\) failed to load"):
        status.resolve("ghost")
    with pytest.raises(ModelNotReady, match="signature"):
        status.model_metadata("ghost", "2")
    assert status.server_not_ready() is not None
    assert backend.store.remove("ghost")
    watcher.sync()
    assert status.server_not_ready() is None


# --- the served models, with the official clients ---------------------------------------------
@pytest.fixture
def two_versions(served: Served) -> Iterator[list[str]]:
    """serving-bike with v1 champion and v2 a 1% canary; the plain champion split after."""
    v1, v2 = served.versions["v1"], served.versions["v2"]
    served.deploy(
        TrafficSplit(model=BIKE, champion=v1, challenger=v2, mode="canary", canary_percent=1)
    )
    try:
        yield [v1, v2]
    finally:
        served.deploy(TrafficSplit(model=BIKE, champion=v1))


def _triton(served: Served, versions: list[str]) -> dict[str, dict[str, Any]]:
    """Per client, its health, metadata and inference answers for serving-bike, by name."""
    # Bodies that could not be decoded: the unknown name must be what is reported.
    undecodable = {"kind": "infer", "inputs": _tensors({"x": "y"}), "binary_data": False}
    asked: dict[tuple[str, str], dict[str, Any]] = {}
    for side in ("http", "grpc"):
        bike = {"protocol": side, "model": BIKE}
        asked |= {
            (side, "server_ready"): {"kind": "server_ready", "protocol": side},
            (side, "server_metadata"): {"kind": "server_metadata", "protocol": side},
            **{(side, f"ready {v}"): {**bike, "kind": "model_ready", "version": v}
               for v in versions},
            **{(side, f"metadata {v}"): {**bike, "kind": "model_metadata", "version": v}
               for v in versions},
            (side, "unknown_version_ready"): {**bike, "kind": "model_ready", "version": UNKNOWN},
            (side, "unknown_version_metadata"):
                {**bike, "kind": "model_metadata", "version": UNKNOWN},
            (side, "unknown_model_infer"): {**undecodable, **bike, "model": "no-such-model"},
            (side, "unknown_version_infer"): {**undecodable, **bike, "version": UNKNOWN},
        }  # fmt: skip
    # The binary tensor extension the server lists.
    asked["http", "binary_prediction"] = {
        "kind": "infer", "protocol": "http", "model": BIKE, "inputs": _tensors(bike_full_row()),
        "outputs": ["prediction"], "binary_data": True,
    }  # fmt: skip
    got: dict[str, dict[str, Any]] = {"http": {}, "grpc": {}}
    answers = triton_calls(served.rest, served.grpc, list(asked.values()))
    for (side, name), answer in zip(asked, answers, strict=True):
        got[side][name] = answer
    return got


@pytest.mark.integration
def test_tritonclient_sees_versions_platform_extensions_and_404_first(
    served: Served, two_versions: list[str]
) -> None:
    got = _triton(served, two_versions)
    for side, not_found in (("http", "404"), ("grpc", "StatusCode.NOT_FOUND")):
        answers = got[side]
        assert answers["server_ready"]["ready"] is True
        assert answers["server_metadata"]["metadata"]["extensions"] == ["binary_tensor_data"]
        for version in two_versions:
            assert answers[f"ready {version}"]["ready"] is True
            meta = answers[f"metadata {version}"]["metadata"]
            assert meta["versions"] == two_versions and meta["platform"] == "mlflow_sklearn"
            assert {t["name"] for t in meta["inputs"]} == set(bike_full_row())
        assert answers["unknown_version_metadata"]["error"]["status"] == not_found
        unknown_model, unknown_version = (
            answers["unknown_model_infer"]["error"], answers["unknown_version_infer"]["error"]
        )  # fmt: skip
        assert "no-such-model" in unknown_model["message"]
        assert unknown_model["status"] == not_found
        assert unknown_version["status"] == not_found
        assert f"version {UNKNOWN!r} is not served" in unknown_version["message"]
    assert got["http"]["unknown_version_ready"]["ready"] is False  # a 4xx is "false" over HTTP
    assert got["grpc"]["unknown_version_ready"]["error"]["status"] == "StatusCode.NOT_FOUND"
    # the listed extension answers
    assert len(got["http"]["binary_prediction"]["outputs"]["prediction"]) == 1


def _kserve_request(model: str, version: str | None = None) -> InferRequest:
    tensor = InferInput("not-a-field", [1], "BYTES")  # undecodable for any model
    tensor.set_data_from_numpy(np.array(["?"], dtype=object))
    return InferRequest(model_name=model, infer_inputs=[tensor], model_version=version)


@pytest.mark.integration
def test_kserve_clients_and_raw_routes_get_404_before_the_body_is_read(
    served: Served, two_versions: list[str]
) -> None:
    async def kserve() -> tuple[Any, Any, Any]:
        rest = InferenceRESTClient(RESTConfig(protocol="v2"))
        stub = InferenceGRPCClient(served.grpc)
        found = []
        try:
            try:
                await rest.infer(served.rest, {"inputs": "garbage"}, model_name="nope")
            except httpx.HTTPStatusError as exc:
                found.append((exc.response.status_code, exc.response.json()["error"]))
            for request in (_kserve_request("nope"), _kserve_request(BIKE, UNKNOWN)):
                try:
                    await stub.infer(request)
                except grpc.aio.AioRpcError as exc:
                    found.append((exc.code(), exc.details()))
        finally:
            await rest.close()
            await stub.close()
        return found[0], found[1], found[2]

    rest_unknown, grpc_unknown, grpc_version = asyncio.run(kserve())
    assert rest_unknown[0] == 404 and "'nope' is not served" in rest_unknown[1]
    assert grpc_unknown[0] == grpc.StatusCode.NOT_FOUND and "'nope'" in grpc_unknown[1]
    assert grpc_version[0] == grpc.StatusCode.NOT_FOUND and UNKNOWN in grpc_version[1]
    garbage = b"{not json"
    for path in (
        "/v1/models/nope:predict",
        "/v2/models/nope/infer",
        f"/v2/models/{BIKE}/versions/{UNKNOWN}/infer",
    ):
        answer = httpx.post(f"{served.rest}{path}", content=garbage)
        assert answer.status_code == 404 and "not served" in answer.json()["error"], path
    for path in (f"/versions/{UNKNOWN}", f"/versions/{UNKNOWN}/ready"):
        assert httpx.get(f"{served.rest}/v2/models/{BIKE}{path}").status_code == 404
    pinned = httpx.post(
        f"{served.rest}/v2/models/{BIKE}/versions/{two_versions[1]}/infer",
        json={"inputs": _tensors(bike_full_row())},
    )
    assert pinned.status_code == 200 and pinned.json()["model_version"] == two_versions[1]


def _tensors(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "datatype": "BYTES" if isinstance(v, str) else "FP64", "shape": [1],
             "data": [v]} for k, v in row.items()]  # fmt: skip


@pytest.mark.integration
def test_grpc_readiness_and_metadata_honour_the_version(
    served: Served, two_versions: list[str]
) -> None:
    rest = httpx.get(f"{served.rest}/v2/models/{BIKE}/versions/{two_versions[1]}").json()
    with grpc.insecure_channel(served.grpc) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=BIKE, version=two_versions[1]))
        assert all(
            stub.ModelReady(pb.ModelReadyRequest(name=BIKE, version=v)).ready
            for v in [*two_versions, ""]
        )
        server = stub.ServerMetadata(pb.ServerMetadataRequest())
        errors = []
        for call in (
            lambda: stub.ModelReady(pb.ModelReadyRequest(name=BIKE, version=UNKNOWN)),
            lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name=BIKE, version=UNKNOWN)),
            lambda: stub.ModelReady(pb.ModelReadyRequest(name="nope")),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            errors.append(caught.value.code())  # type: ignore[attr-defined]
    assert list(meta.versions) == two_versions == rest["versions"]
    assert meta.platform == rest["platform"] == "mlflow_sklearn"
    assert [t.name for t in meta.inputs] == [t["name"] for t in rest["inputs"]]
    assert list(server.extensions) == httpx.get(f"{served.rest}/v2").json()["extensions"]
    assert errors == [grpc.StatusCode.NOT_FOUND] * 3


# --- a deployed version that cannot load, on the session stack ------------------------------
UNSIGNED = "conformance-unsigned"


def _register_iris(uri: str) -> tuple[str, str]:
    """v1 logged with a signature, v2 the same model without one (inputs unknown)."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("conformance-tests")
    frame = load_iris(as_frame=True).frame
    x = frame.drop(columns="target")
    model = LogisticRegression(max_iter=500).fit(x, frame["target"])
    versions = []
    for signature in (infer_signature(x, model.predict(x)), None):
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                pip_requirements=["scikit-learn"],
                serialization_format="pickle",
                registered_model_name=UNSIGNED,
            )
        versions.append(str(info.registered_model_version))
    return versions[0], versions[1]


def _wait(check: Any, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


@pytest.mark.integration
def test_a_version_that_cannot_load_makes_the_server_unready_and_status_fail(stack: Stack) -> None:
    settings = stack.settings
    rest = f"http://127.0.0.1:{settings.serving.rest_port}"
    grpc_target = f"127.0.0.1:{settings.serving.grpc_port}"
    signed, unsigned = _register_iris(settings.mlflow_tracking_uri)
    row = dict(zip(load_iris().feature_names, [5.1, 3.5, 1.4, 0.2], strict=True))
    deployed = stack.cli("deploy", UNSIGNED, "--version", signed)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    try:
        assert _wait(lambda: httpx.get(f"{rest}/v2/models/{UNSIGNED}/ready").is_success)
        assert httpx.get(f"{rest}/v2/health/ready").is_success
        shadow = stack.cli("deploy", UNSIGNED, "--version", unsigned, "--shadow")
        assert shadow.returncode == 0, shadow.stdout + shadow.stderr
        unready = _wait(lambda: httpx.get(f"{rest}/v2/health/ready").status_code == 503)
        assert unready, "the server stayed ready with an unloadable shadow version"
        reason = httpx.get(f"{rest}/v2/health/ready").json()["error"]
        assert f"v{unsigned} (shadow challenger) failed to load" in reason
        assert "without a signature" in reason and "infer_signature" in reason

        async def kserve() -> tuple[Any, bool]:
            client = InferenceRESTClient(RESTConfig(protocol="v2"))
            stub = InferenceGRPCClient(grpc_target)
            try:
                with pytest.raises(httpx.HTTPStatusError) as refused:
                    await client.is_server_ready(rest)
                return refused.value.response.status_code, await stub.is_server_ready()
            finally:
                await client.close()
                await stub.close()

        assert asyncio.run(kserve()) == (503, False)
        with grpc.insecure_channel(grpc_target) as channel:
            stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
            ready = {
                v: stub.ModelReady(pb.ModelReadyRequest(name=UNSIGNED, version=v)).ready
                for v in ("", signed, unsigned)
            }
        assert ready == {"": False, signed: True, unsigned: False}
        pinned = httpx.get(f"{rest}/v2/models/{UNSIGNED}/versions/{unsigned}/ready")
        assert pinned.status_code == 503 and "signature" in pinned.json()["error"]
        # The champion keeps answering meanwhile.
        predicted = httpx.post(f"{rest}/v1/models/{UNSIGNED}:predict", json={"instances": [row]})
        assert predicted.status_code == 200, predicted.text
        status = stack.cli("status")
        assert status.returncode == 1, status.stdout + status.stderr
        assert "serving is not ready" in status.stdout and "without a signature" in status.stdout
        traffic = stack.cli("traffic", UNSIGNED)
        assert traffic.returncode == 0 and "False" in traffic.stdout, traffic.stdout
        assert "without a signature" in traffic.stdout
    finally:
        restored = stack.cli("deploy", UNSIGNED, "--version", signed, "--force")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert _wait(lambda: httpx.get(f"{rest}/v2/health/ready").is_success, 60)
    assert stack.cli("status").returncode == 0
    assert "True" in stack.cli("traffic", UNSIGNED).stdout
