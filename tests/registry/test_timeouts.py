"""MLflow calls of the registry: bounded in time, named when they fail, none past a deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from loopstack.core import deadline
from loopstack.core.processes import free_port
from loopstack.core.settings import MlflowSettings
from loopstack.registry.adoption import Source, fetch_candidate
from loopstack.registry.errors import RegistryUnavailable
from loopstack.registry.registry import ModelRegistry
from loopstack.registry.timeouts import mlflow_client_env


class _Decisions:
    def publish(self, topic: str, events: object) -> None:
        raise AssertionError("nothing is decided in these tests")


@pytest.fixture
def dead_mlflow(monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    for name, value in mlflow_client_env(MlflowSettings()).items():
        monkeypatch.setenv(name, value)
    return ModelRegistry(f"http://127.0.0.1:{free_port()}", _Decisions())


def test_the_settings_bound_mlflow_calls_to_3_s_without_retries() -> None:
    assert mlflow_client_env(MlflowSettings()) == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }


def test_mlflow_down_is_named_at_once(dead_mlflow: ModelRegistry) -> None:
    with pytest.raises(RegistryUnavailable):  # MLflow's client loads its plugins on first use
        dead_mlflow.models()
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as failure:
        dead_mlflow.aliases("credit-default")
    assert time.monotonic() - started < 3
    assert failure.value.message.startswith(
        f"MLflow at {dead_mlflow.tracking_uri} is not answering (connection refused); "
        "start it with `loopstack up`"
    )
    assert failure.value.http_status == 503


def test_no_call_starts_after_the_requests_deadline(dead_mlflow: ModelRegistry) -> None:
    with deadline.within(0.05):
        time.sleep(0.1)
        with pytest.raises(deadline.DeadlinePassed) as failure:
            dead_mlflow.promote("credit-default", "2", "by hand")
    assert "ran out of its 0.05 s before the MLflow call get_registered_model" in str(
        failure.value.message
    )
    assert failure.value.http_status == 503
    assert deadline.remaining() is None  # the deadline ends with its block


def test_an_inner_deadline_never_extends_the_outer_one() -> None:
    with deadline.within(1.0), deadline.within(60.0):
        left = deadline.remaining()
        assert left is not None and left <= 1.0


def test_adopting_from_an_mlflow_that_is_down_names_mlflow_not_the_model(
    dead_mlflow: ModelRegistry, tmp_path: Path
) -> None:
    source = Source("run", "0123456789abcdef", "model")
    with pytest.raises(RegistryUnavailable) as failure:
        fetch_candidate(dead_mlflow.tracking_uri, source, tmp_path)
    assert failure.value.message.startswith(
        f"MLflow at {dead_mlflow.tracking_uri} is not answering"
    )
