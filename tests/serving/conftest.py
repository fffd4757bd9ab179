"""Fixtures of the serving tests: a project with two served models, Feast, a real inference server.

Model names are private to these tests (`serving-bike`, `serving-credit`), so they never touch the
versions other tests register on the shared MLflow. Their specs are copies of the shipped ones.
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import mlflow
import pandas as pd
import pytest
import yaml
from loopstack.core.events import EventService, open_event_log
from loopstack.core.events.errors import TopicNotFound
from loopstack.core.modelspec import load_model_spec
from loopstack.core.processes import Supervisor, free_port
from loopstack.core.settings import Settings
from loopstack.features import store as feature_store
from loopstack.pipelines.modelcode import build_estimator
from loopstack.serving.stack import serving_process
from loopstack.serving.traffic import TrafficSplit, TrafficStore
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from tests import conftest as root
from tests.serving import wrappers

PROJECT_DIR = root.PROJECT_DIR
DATA = PROJECT_DIR / "feature_repo" / "data"
ONLINE_AS_OF = datetime(2011, 7, 1, 12, tzinfo=UTC)
BIKE, CREDIT = "serving-bike", "serving-credit"
BIKE_REQUEST_FIELDS = ["season", "mnth", "day", "hr", "holiday", "weekday", "workingday",
                       "weathersit", "temp", "atemp", "hum", "windspeed"]  # fmt: skip
BIKE_FEATURES = ["bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d"]


@dataclass(frozen=True)
class Served:
    """A running inference server and what the tests need to drive and observe it."""

    settings: Settings
    rest: str
    grpc: str
    versions: dict[str, str]
    """Role -> version of serving-bike: `v1`, `v2`, `sleepy`, `failing`; of serving-credit:
    `credit`, `credit2`."""
    verify: ssl.SSLContext | bool = True
    """What an https server must present (and what its client presents, mutual TLS)."""

    def deploy(self, split: TrafficSplit, timeout: float = 60) -> TrafficSplit:
        """Record a split and wait until the server serves its revision."""
        stored = TrafficStore(self.settings.state_path / "serving" / "traffic.db").set(split)
        wait_revision(self.rest, stored.model, stored.revision, timeout, self.verify)
        return stored

    def events(self, ids: set[str], timeout: float = 15) -> dict[str, dict[str, Any]]:
        """The prediction events with these ids (waits until all arrived)."""
        return wait_events(self.settings, lambda e: e["id"] in ids, len(ids), timeout)


def wait_revision(
    rest: str,
    model: str,
    revision: int,
    timeout: float = 60,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Poll `/metrics` until the model's split revision is served."""
    deadline = time.monotonic() + timeout
    pattern = re.compile(rf'loopstack_serving_split_revision{{model="{re.escape(model)}"}} (\S+)')
    while time.monotonic() < deadline:
        found = pattern.search(httpx.get(f"{rest}/metrics", timeout=5, verify=verify).text)
        if found and float(found.group(1)) >= revision:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{model} revision {revision} not served after {timeout}s")


def wait_events(
    settings: Settings, accept: Any, count: int, timeout: float = 15
) -> dict[str, dict[str, Any]]:
    """Events of the predictions topic that `accept`, keyed by id, once `count` arrived."""
    log = open_event_log(settings)
    try:
        service = EventService(log)
        deadline = time.monotonic() + timeout
        found: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            try:
                page = service.tail("predictions", limit=5000)
            except TopicNotFound:  # nothing published yet
                time.sleep(0.2)
                continue
            found = {i["event"]["id"]: i["event"] for i in page.items if accept(i["event"])}
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise TimeoutError(f"{len(found)} of {count} events after {timeout}s")
    finally:
        log.close()


def _project(base: Path) -> Path:
    """A project dir with renamed copies of the shipped specs and the real feature repo."""
    project = base / "project"
    for source, name in (("bike-demand", BIKE), ("credit-default", CREDIT)):
        folder = project / "models" / name
        folder.mkdir(parents=True)
        spec = yaml.safe_load((PROJECT_DIR / "models" / source / "model.yaml").read_text())
        spec["name"] = name
        (folder / "model.yaml").write_text(yaml.safe_dump(spec))
        shutil.copy(PROJECT_DIR / "models" / source / "train.py", folder / "train.py")
    (project / "feature_repo").symlink_to(PROJECT_DIR / "feature_repo")
    return project


def bike_frame() -> pd.DataFrame:
    """Labels with the lags known at each hour (what training sees), ints as floats."""
    # The replay file holds exactly that join, for the whole year (the training files end
    # with February).
    frame = pd.read_parquet(DATA / "bike_demand_replay.parquet")
    for column in [*BIKE_REQUEST_FIELDS, *BIKE_FEATURES]:
        if column != "weathersit":
            frame[column] = frame[column].astype("float64")
    return frame.head(3000)


def known_customers(count: int) -> list[int]:
    """Customers whose snapshot is in the online store (taken before ONLINE_AS_OF)."""
    customers = pd.read_parquet(DATA / "credit_customers.parquet")
    known = customers[customers["event_timestamp"] <= ONLINE_AS_OF]
    return [int(c) for c in known["customer_id"].head(count)]


def credit_frame() -> pd.DataFrame:
    """Customers with their default label."""
    customers = pd.read_parquet(DATA / "credit_customers.parquet")
    labels = pd.read_parquet(DATA / "credit_default_labels.parquet")
    return customers.merge(labels[["customer_id", "default"]], on="customer_id")


def _register(
    client: MlflowClient,
    name: str,
    model: Any,
    inputs: pd.DataFrame,
    output: Any,
    sensitive: list[str] | None = None,
) -> str:
    with mlflow.start_run(), tempfile.TemporaryDirectory() as folder:
        # The train pipeline's reference sample (sensitive fields left out): explanations use
        # it as their background.
        reference = Path(folder) / "reference.parquet"
        sample = inputs.drop(columns=sensitive or []).sample(
            n=min(200, len(inputs)), random_state=0
        )
        sample.to_parquet(reference, index=False)
        mlflow.log_artifact(str(reference), artifact_path="reference")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(inputs.head(5), output),
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn", "pandas", "numpy"],
        )
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name)
    return str(client.create_model_version(name, info.model_uri, model_id=info.model_id).version)


def register_models(settings: Settings) -> dict[str, str]:
    """Fit small models on the shipped data and register them; returns role -> version."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment("serving-tests")
    client = MlflowClient(settings.mlflow_tracking_uri)
    cloudpickle.register_pickle_by_value(wrappers)
    bike_spec = load_model_spec(settings.models_dir, BIKE)
    frame = bike_frame()
    inputs = frame[[*BIKE_REQUEST_FIELDS, *BIKE_FEATURES]]
    versions: dict[str, str] = {}
    for role, iterations in (("v1", 5), ("v2", 10)):
        model = build_estimator(bike_spec, {"max_iter": iterations})
        model.fit(inputs, frame["bikers"])
        versions[role] = _register(client, BIKE, model, inputs, model.predict(inputs.head(5)))
        if role == "v1":
            base = model
    sleepy = wrappers.SleepyRegressor(base, 2.0)
    versions["sleepy"] = _register(client, BIKE, sleepy, inputs, base.predict(inputs.head(5)))
    failing = wrappers.FailingRegressor()
    versions["failing"] = _register(client, BIKE, failing, inputs, base.predict(inputs.head(5)))
    credit_spec = load_model_spec(settings.models_dir, CREDIT)
    credit = credit_frame()
    x = credit[["student", "balance", "income"]]
    for role, strength in (("credit", 1.0), ("credit2", 0.01)):
        classifier = build_estimator(credit_spec, {"model": "logistic", "C": strength})
        classifier.fit(x, credit["default"])
        output = classifier.predict_proba(x.head(5))[:, 1]
        versions[role] = _register(
            client, CREDIT, classifier, x, output, credit_spec.sensitive_fields
        )
    return versions


@pytest.fixture(scope="session")
def serving_settings(stack: root.Stack, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the test project: the session stack's MLflow, private state and ports."""
    uri = stack.settings.mlflow_tracking_uri
    base = tmp_path_factory.mktemp("serving")
    return Settings(
        project_dir=_project(base),
        state_dir=base / "state",
        mlflow={"tracking_uri": uri},
        serving={
            "rest_port": free_port(),
            "grpc_port": free_port(),
            "traffic_poll_s": 0.2,
            "ingest_pair_timeout_s": 1.0,
        },
    )


@pytest.fixture(scope="session")
def served(serving_settings: Settings) -> Iterator[Served]:
    """Feast applied and materialized, models registered, an inference server running."""
    settings = serving_settings
    supervisor = Supervisor(settings.state_path)
    running = supervisor.start(serving_process(settings))  # imports in parallel with the setup
    try:
        store = feature_store.apply(settings)
        feature_store.materialize(
            settings, datetime(2011, 1, 1, tzinfo=UTC), ONLINE_AS_OF, store=store
        )
        versions = register_models(settings)
        supervisor.wait_healthy(running, timeout=120)
        rest = f"http://{settings.host}:{settings.serving.rest_port}"
        server = Served(settings, rest, f"{settings.host}:{settings.serving.grpc_port}", versions)
        # The first load of each model imports its libraries and warms Feast: slow on a busy host.
        server.deploy(TrafficSplit(model=CREDIT, champion=versions["credit"]), timeout=240)
        server.deploy(TrafficSplit(model=BIKE, champion=versions["v1"]), timeout=240)
        yield server
    finally:
        supervisor.stop("serving", grace=5)


@pytest.fixture
def restore(served: Served) -> Iterator[None]:
    """Put both models back on their plain champion split after the test."""
    yield
    served.deploy(TrafficSplit(model=BIKE, champion=served.versions["v1"]))
    served.deploy(TrafficSplit(model=CREDIT, champion=served.versions["credit"]))


def bike_row(hour: int = 8) -> dict[str, Any]:
    """Request-time fields of one hour (the caller's part of a bike-demand request)."""
    return {"season": 3.0, "mnth": 7.0, "day": 1.0, "hr": float(hour), "holiday": 0.0,
            "weekday": 5.0, "workingday": 1.0, "weathersit": "clear", "temp": 0.7,
            "atemp": 0.65, "hum": 0.5, "windspeed": 0.2}  # fmt: skip


def bike_full_row(hour: int = 8) -> dict[str, Any]:
    """Every input, features included (a request without an entity key)."""
    return {**bike_row(hour), "bikers_last_hour": 120.0, "bikers_same_hour_yesterday": 300.0,
            "bikers_mean_7d": 180.0}  # fmt: skip


def dumps(obj: Any) -> str:
    """Compact JSON."""
    return json.dumps(obj, separators=(",", ":"))
