"""Readiness means able: the server is never ready while a deployed version would answer 503.

A probe (`loopstack up`, the chart's readinessProbe) trusts `/v2/health/ready` and gRPC
`ServerReady`; both stay false until every version the traffic records name (champion, canary
or shadow challenger) is loaded and answering, and per-model readiness likewise, with the reason
(the version loading, its role and revision). The fault: a version whose load takes as long as
the test says (its unpickling waits for a gate file), served by an inference server of the
test's own, started after the record exists (the restart case) and then given a canary.
Also here (it needs the session's served server): serving goes on answering while its event
log refuses writes, and every answered prediction's event arrives once the log takes writes.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import grpc
import httpx
import mlflow
import pytest
import yaml
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from loopstack.core.modelspec import load_model_spec
from loopstack.core.processes import Supervisor, free_port
from loopstack.core.settings import Settings
from loopstack.pipelines.modelcode import build_estimator
from loopstack.serving.errors import ModelNotReady
from loopstack.serving.loader import LoadedVersion
from loopstack.serving.metadata import OIPStatus
from loopstack.serving.metrics import ServingMetrics
from loopstack.serving.runtime import ServingRuntime
from loopstack.serving.schema import ModelSchema
from loopstack.serving.stack import serving_process
from loopstack.serving.traffic import TrafficSplit, TrafficStore
from loopstack.serving.watcher import SplitWatcher
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from prometheus_client import CollectorRegistry
from sklearn.base import BaseEstimator, RegressorMixin

from tests import conftest as root

from .conftest import (
    BIKE,
    BIKE_FEATURES,
    BIKE_REQUEST_FIELDS,
    Served,
    _register,
    bike_frame,
    bike_full_row,
)

MODEL = "fault-slow-load"


# --- the watcher's readiness, without a transport ---------------------------------------------
def _toy(model: str, version: str) -> LoadedVersion:
    schema = ModelSchema.from_signature(Schema([ColSpec("double", "x")]), model)
    return LoadedVersion(model, version, object(), schema, None, "FP64")


def test_the_server_is_not_ready_before_the_first_sync_nor_while_any_deployed_version_loads(
    tmp_path: Path,
) -> None:
    gates = {"1": threading.Event(), "2": threading.Event()}

    def load(model: str, version: str) -> LoadedVersion:
        assert gates[version].wait(30), "the test never opened the gate"
        return _toy(model, version)

    store = TrafficStore(tmp_path / "traffic.db")
    runtime = ServingRuntime(None, ServingMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    watcher = SplitWatcher(store, runtime, load)
    status = OIPStatus(runtime, watcher.readiness)

    def sync_in_background() -> threading.Thread:
        thread = threading.Thread(target=watcher.sync, daemon=True)
        thread.start()
        return thread

    def until(check: Any) -> None:
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline, "the watcher did not get there"
            time.sleep(0.01)

    try:
        assert status.server_not_ready() == ("starting: the traffic records have not been read yet")
        store.set(TrafficSplit(model="m", champion="1"))
        syncing = sync_in_background()
        until(lambda: watcher.readiness.loading_of("m") is not None)
        assert "model 'm' revision 1 is loading: v1 (champion)" in str(status.server_not_ready())
        with pytest.raises(ModelNotReady, match="v1 \\(champion\\)"):
            status.check_ready("m")
        with pytest.raises(ModelNotReady, match="loading"):
            status.resolve("m", "1")
        gates["1"].set()
        syncing.join(10)
        assert status.server_not_ready() is None
        status.check_ready("m")

        store.set(
            TrafficSplit(model="m", champion="1", challenger="2", mode="canary", canary_percent=10)
        )
        syncing = sync_in_background()
        until(lambda: watcher.readiness.loading_of("m") is not None)
        reason = str(status.server_not_ready())
        assert "revision 2 is loading" in reason and "v2 (canary challenger)" in reason
        status.check_ready("m", "1")  # the champion answers meanwhile ...
        with pytest.raises(ModelNotReady, match="v2 \\(canary challenger\\)"):
            status.check_ready("m")  # ... but the model is not what was deployed yet
        gates["2"].set()
        syncing.join(10)
        assert status.server_not_ready() is None
        status.check_ready("m")
        status.check_ready("m", "2")

        store.remove("m")  # a model no longer deployed is no reason to be unready
        watcher.sync()
        assert status.server_not_ready() is None
    finally:
        for gate in gates.values():
            gate.set()
        runtime.close()


# --- a real inference server and a version that takes its time to load ------------------------
class GatedLoad(RegressorMixin, BaseEstimator):
    """Answers like `inner`; unpickling it waits until the `gate` file exists (at most 5 min)."""

    def __init__(self, inner: Any = None, gate: str = "") -> None:
        self.inner = inner
        self.gate = gate

    def fit(self, x: Any, y: Any) -> GatedLoad:
        """Already fitted: `inner` is."""
        return self

    def predict(self, x: Any) -> Any:
        """`inner`'s answer."""
        return self.inner.predict(x)

    def __setstate__(self, state: dict[str, Any]) -> None:
        import os
        import time

        deadline = time.monotonic() + 300
        while not os.path.exists(state["gate"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        super().__setstate__(state)


def _project(base: Path) -> Path:
    """A project whose one model reads request fields only (no Feast lookup to wait for)."""
    folder = base / "project" / "models" / MODEL
    folder.mkdir(parents=True)
    source = root.PROJECT_DIR / "models" / "bike-demand"
    spec = yaml.safe_load((source / "model.yaml").read_text())
    spec.update(name=MODEL, feature_service=None,
                request_fields=[*BIKE_REQUEST_FIELDS, *BIKE_FEATURES])  # fmt: skip
    (folder / "model.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(source / "train.py", folder / "train.py")
    return base / "project"


@pytest.fixture(scope="module")
def slow_server(
    stack: root.Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str], Path]]:
    """Settings of a server of this module's own (not started), its versions and gate folder:
    `plain`, `gated-1` and `gated-2` (whose loads wait for `<gates>/1` and `<gates>/2`)."""
    base = tmp_path_factory.mktemp("fault-readiness")
    gates = base / "gates"
    gates.mkdir()
    settings = Settings(
        project_dir=_project(base),
        state_dir=base / "state",
        mlflow={"tracking_uri": stack.settings.mlflow_tracking_uri},
        serving={"rest_port": free_port(), "grpc_port": free_port(), "traffic_poll_s": 0.2},
    )
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment("fault-readiness")
    client = MlflowClient(settings.mlflow_tracking_uri)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    frame = bike_frame()
    inputs = frame[[*BIKE_REQUEST_FIELDS, *BIKE_FEATURES]]
    model = build_estimator(load_model_spec(settings.models_dir, MODEL), {"max_iter": 5})
    model.fit(inputs, frame["bikers"])
    output = model.predict(inputs.head(5))
    versions = {"plain": _register(client, MODEL, model, inputs, output)}
    for gate in ("1", "2"):
        gated = GatedLoad(model, str(gates / gate))
        versions[f"gated-{gate}"] = _register(client, MODEL, gated, inputs, output)
    try:
        yield settings, versions, gates
    finally:
        for gate in ("1", "2"):  # a server still loading lets go
            (gates / gate).touch()


def _observe(rest: str, client: httpx.Client) -> tuple[int, int, int]:
    """(server ready, model ready, predict) statuses, in that order: a ready answer promises
    that the predict sent after it is answered."""
    server = client.get(f"{rest}/v2/health/ready").status_code
    model = client.get(f"{rest}/v2/models/{MODEL}/ready").status_code
    predict = client.post(
        f"{rest}/v1/models/{MODEL}:predict", json={"instances": [bike_full_row()]}
    ).status_code
    return server, model, predict


def _grpc_server_ready(settings: Settings) -> bool:
    target = f"{settings.host}:{settings.serving.grpc_port}"
    with grpc.insecure_channel(target) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        return bool(stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready)


def _until_ready(rest: str, client: httpx.Client, seen: list[tuple[int, int, int]]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen.append(_observe(rest, client))
        if seen[-1] == (200, 200, 200):
            return
        time.sleep(0.1)
    raise AssertionError(f"not ready and answering after 180 s: {seen[-5:]}")


@pytest.mark.integration
def test_a_restarted_server_is_ready_only_once_every_deployed_version_answers(
    slow_server: tuple[Settings, dict[str, str], Path],
) -> None:
    settings, versions, gates = slow_server
    traffic = TrafficStore(settings.state_path / "serving" / "traffic.db")
    traffic.set(TrafficSplit(model=MODEL, champion=versions["gated-1"]))  # deployed before start
    supervisor = Supervisor(settings.state_path)
    running = supervisor.start(serving_process(settings))
    rest = f"http://{settings.host}:{settings.serving.rest_port}"
    try:
        supervisor.wait_healthy(running, timeout=240)  # live: the process answers HTTP
        seen: list[tuple[int, int, int]] = []
        with httpx.Client(timeout=30) as client:
            for _ in range(10):  # the version is held back: live, not ready, with the reason
                seen.append(_observe(rest, client))
                time.sleep(0.1)
            assert all(s[0] == 503 and s[1] == 503 for s in seen), seen
            why = client.get(f"{rest}/v2/health/ready").json()
            assert why["ready"] is False
            assert f"model '{MODEL}'" in why["error"], why
            assert f"v{versions['gated-1']} (champion)" in why["error"], why
            assert not _grpc_server_ready(settings)
            (gates / "1").touch()
            _until_ready(rest, client, seen)
            assert _grpc_server_ready(settings)

            # A canary whose challenger takes its time: the champion answers throughout, the
            # server and the model are not ready until the challenger is loaded too.
            traffic.set(
                TrafficSplit(
                    model=MODEL,
                    champion=versions["gated-1"],
                    challenger=versions["gated-2"],
                    mode="canary",
                    canary_percent=50,
                )
            )
            canary: list[tuple[int, int, int]] = []
            deadline = time.monotonic() + 30
            while not canary or canary[-1][0] == 200:  # until the watcher sees the record
                assert time.monotonic() < deadline, "the canary record was never picked up"
                canary.append(_observe(rest, client))
            for _ in range(10):
                canary.append(_observe(rest, client))
                time.sleep(0.1)
            loading = canary[canary.index(next(s for s in canary if s[0] == 503)) :]
            assert all(s == (503, 503, 200) for s in loading), canary
            why = client.get(f"{rest}/v2/health/ready").json()["error"]
            assert f"v{versions['gated-2']} (canary challenger)" in why, why
            (gates / "2").touch()
            _until_ready(rest, client, canary)
            seen += canary
        # The promise a probe relies on: never ready while the model would refuse with 503.
        assert not [s for s in seen if s[0] == 200 and s[2] == 503], seen
        assert not [s for s in seen if s[1] == 200 and s[2] == 503], seen
        assert running.alive()
    finally:
        supervisor.stop("serving", grace=5)


# --- an event log that refuses writes ---------------------------------------------------------
@pytest.mark.integration
def test_serving_answers_while_the_event_log_refuses_writes_and_delivers_every_event_after(
    served: Served,
) -> None:
    """The session server's own log (private to the serving tests) refuses every append while
    another process holds its write lock, past the log's busy timeout: as root a chmod stops
    nobody, and a server that holds the file open already ignores it. Answers never wait for
    the log (their events wait in the outbox); once it takes writes again every event arrives."""
    path = served.settings.state_path / "events" / "events.db"
    assert path.is_file(), path
    busy_s = served.settings.events.sqlite_busy_timeout_ms / 1000
    holder = sqlite3.connect(path, timeout=30, isolation_level=None)
    ids: set[str] = set()
    latencies: list[float] = []
    try:
        holder.execute("BEGIN IMMEDIATE")  # the log's write lock: every append times out
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + busy_s * 2  # the outbox relay fails and backs off
            while time.monotonic() < deadline or len(ids) < 40:
                started = time.perf_counter()
                answer = client.post(
                    f"{served.rest}/v1/models/{BIKE}:predict",
                    json={"instances": [bike_full_row(len(ids) % 24)]},
                )
                latencies.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                ids.add(answer.json()["id"])
                time.sleep(0.05)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert max(latencies) < busy_s * 0.8, f"an answer waited for the log: {max(latencies):.2f} s"
    assert set(served.events(ids, timeout=120)) == ids  # nothing answered was lost
    after = httpx.post(
        f"{served.rest}/v1/models/{BIKE}:predict", json={"instances": [bike_full_row()]}
    )
    assert after.status_code == 200, after.text
    assert served.events({after.json()["id"]}, timeout=30)
