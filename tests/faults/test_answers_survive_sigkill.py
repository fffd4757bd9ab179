"""A SIGKILL of the inference server under load loses no answered prediction's event.

An inference server of this test's own (the session stack's MLflow holds its model) is driven at
about 100 requests a second over v1 REST, v2 REST and gRPC, and killed with SIGKILL mid-load.
Every request answered 200 is recorded with its prediction ids. The server is started again on
the same state: its Publisher sends what the killed process left in its outbox file, and every
recorded id must then be in the event log (durable answers: an answer leaves only once its event
is in that file). The restarted server must answer too.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import mlflow
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from loopstack.core.events import Event, open_event_log
from loopstack.core.events.errors import TopicNotFound
from loopstack.core.processes import RunningProcess, Supervisor, free_port
from loopstack.core.settings import Settings
from loopstack.serving.stack import serving_process
from loopstack.serving.traffic import TrafficSplit, TrafficStore
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.conftest import Stack

pytestmark = pytest.mark.integration

MODEL = "fault-sigkill"
THREADS = 6
PACE_S = 0.06
"""Pause between one thread's requests: six threads make about 100 requests a second."""
LOAD_S = 3.0
MIN_ANSWERS = 150


def register(tracking: str) -> tuple[str, dict[str, float]]:
    """A small numeric classifier (iris: is it virginica?) registered on the stack's MLflow."""
    iris = load_iris(as_frame=True)
    x = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    y = (iris.target == 2).astype(int)
    model = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment("fault-tests")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x.head(5), model.predict_proba(x.head(5))[:, 1]),
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],
        )
    client = MlflowClient(tracking)
    try:
        client.get_registered_model(MODEL)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, info.model_uri, model_id=info.model_id).version
    return str(version), {k: float(v) for k, v in x.iloc[120].items()}


def start(supervisor: Supervisor, settings: Settings) -> RunningProcess:
    running = supervisor.start(serving_process(settings))
    supervisor.wait_healthy(running, timeout=180)
    deadline = time.monotonic() + 180
    url = f"http://127.0.0.1:{settings.serving.rest_port}/v2/models/{MODEL}/ready"
    while httpx.get(url, timeout=5).status_code != 200:
        assert time.monotonic() < deadline, f"{MODEL} not ready after 180 s"
        time.sleep(0.2)
    return running


class Load:
    """Threads sending requests until the server is gone; the ids of every 200 answer."""

    def __init__(self, settings: Settings, row: dict[str, float]) -> None:
        self.rest = f"http://127.0.0.1:{settings.serving.rest_port}"
        self.grpc = f"127.0.0.1:{settings.serving.grpc_port}"
        self.row = row
        self.answered: list[str] = []
        self.by_protocol = {"v1": 0, "v2": 0, "grpc": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(THREADS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, index: int) -> None:
        protocol = ("v1", "v2", "grpc")[index % 3]
        with (
            httpx.Client(timeout=10) as client,
            grpc.insecure_channel(self.grpc) as channel,
        ):
            stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
            while not self._stop.is_set():
                try:
                    ids = self._send(protocol, client, stub)
                except (httpx.HTTPError, grpc.RpcError):
                    ids = None  # refused or cut by the kill: not answered
                if ids:
                    with self._lock:
                        self.answered += ids
                        self.by_protocol[protocol] += 1
                time.sleep(PACE_S)

    def _send(self, protocol: str, client: httpx.Client, stub: Any) -> list[str] | None:
        if protocol == "v1":
            answer = client.post(f"{self.rest}/v1/models/{MODEL}:predict",
                                 json={"instances": [self.row]})  # fmt: skip
            return list(answer.json()["prediction_ids"]) if answer.status_code == 200 else None
        if protocol == "v2":
            inputs = [{"name": k, "datatype": "FP64", "shape": [1], "data": [v]}
                      for k, v in self.row.items()]  # fmt: skip
            answer = client.post(f"{self.rest}/v2/models/{MODEL}/infer", json={"inputs": inputs})
            if answer.status_code != 200:
                return None
            return str(answer.json()["parameters"]["prediction_ids"]).split(",")
        request = pb.ModelInferRequest(model_name=MODEL, inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=k, datatype="FP64", shape=[1], contents=pb.InferTensorContents(fp64_contents=[v])
            ) for k, v in self.row.items()
        ])  # fmt: skip
        reply = stub.ModelInfer(request, timeout=10)
        return reply.parameters["prediction_ids"].string_param.split(",")


def logged_ids(settings: Settings) -> set[str]:
    """Ids of every prediction event in the log."""
    log = open_event_log(settings)
    try:
        try:
            marks = log.watermarks("predictions")
        except TopicNotFound:
            return set()
        ids: set[str] = set()
        for partition, (first, end) in marks.items():
            offset = first
            while offset < end:
                records = log.read("predictions", partition, offset, 5000)
                if not records:
                    break
                ids.update(Event.from_json(r.value).id for r in records)
                offset = records[-1].offset + 1
        return ids
    finally:
        log.close()


def wait_logged(settings: Settings, wanted: set[str], timeout: float) -> set[str]:
    """The wanted ids still missing from the log after waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    missing = set(wanted)
    while missing and time.monotonic() < deadline:
        missing -= logged_ids(settings)
        time.sleep(0.5)
    return missing


def kill_under_load(stack: Stack, tmp_path: Path, durable: bool) -> tuple[set[str], set[str]]:
    """Serve, load, SIGKILL, restart: (ids answered before the kill, those missing from the log).

    Asserts the restarted server answers and logs what it answers.
    """
    version, row = register(stack.settings.mlflow_tracking_uri)
    (tmp_path / "project" / "models").mkdir(parents=True)
    settings = Settings(
        project_dir=tmp_path / "project",
        state_dir=tmp_path / "state",
        mlflow={"tracking_uri": stack.settings.mlflow_tracking_uri},
        serving={
            "rest_port": free_port(),
            "grpc_port": free_port(),
            "traffic_poll_s": 0.2,
            "async_inference": False,
            "durable_answers": durable,
        },
    )
    TrafficStore(settings.state_path / "serving" / "traffic.db").set(
        TrafficSplit(model=MODEL, champion=version)
    )
    supervisor = Supervisor(settings.state_path)
    running = start(supervisor, settings)
    try:
        load = Load(settings, row)
        load.start()
        time.sleep(LOAD_S)
        deadline = time.monotonic() + 15  # a busy machine answers slower: wait for enough
        while len(load.answered) < MIN_ANSWERS and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(running.pid, signal.SIGKILL)  # mid-load: requests are in flight
        load.stop()
        answered = set(load.answered)
        assert len(answered) >= MIN_ANSWERS and all(load.by_protocol.values()), load.by_protocol

        start(supervisor, settings)  # its Publisher sends the killed process's outbox leftovers
        missing = wait_logged(settings, answered, timeout=60 if durable else 15)

        # The restarted server serves, and its answers are logged too.
        with httpx.Client(timeout=10) as client:
            ids = Load(settings, row)._send("v2", client, None)
        assert ids and not wait_logged(settings, set(ids), timeout=30)
        return answered, missing
    finally:
        supervisor.stop("serving", grace=5)


def test_every_answered_prediction_survives_a_sigkill_of_the_server(
    stack: Stack, tmp_path: Path
) -> None:
    answered, missing = kill_under_load(stack, tmp_path, durable=True)
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions lost"
