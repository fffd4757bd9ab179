"""Detector bundles from the MLflow registry: the version's run artifact, or none."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopstack.core.errors import Unavailable
from loopstack.monitoring.drift.bundles import MlflowBundles, detector_key
from mlflow.tracking import MlflowClient


def test_versions_with_and_without_a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a new SQLite store makes ./mlruns for its default experiment
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("drift", artifact_location=str(tmp_path / "artifacts"))
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(b"bundle-bytes")
    client.create_registered_model("bike-demand")
    runs = []
    for with_bundle in (True, False):
        run = client.create_run(experiment)
        if with_bundle:
            client.log_artifact(run.info.run_id, str(bundle), artifact_path="detectors")
        client.set_terminated(run.info.run_id)
        runs.append(run.info.run_id)
        client.create_model_version(
            "bike-demand", f"runs:/{run.info.run_id}/model", run.info.run_id
        )
    bundles = MlflowBundles(uri)
    assert bundles.fetch("bike-demand", "1") == b"bundle-bytes"
    assert bundles.fetch("bike-demand", "2") is None
    assert bundles.fetch("bike-demand", "9") is None
    assert bundles.fetch("nobody", "1") is None


def test_unreachable_registry_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopstack.core.processes import free_port

    # MLflow retries a refused connection for minutes by default.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(Unavailable):
        MlflowBundles(f"http://127.0.0.1:{free_port()}").fetch("bike-demand", "1")


def test_detector_keys_are_server_safe() -> None:
    assert detector_key("bike-demand", "3") == "bike-demand-v3"
    assert detector_key("a b/c", "unknown") == "a_b_c-vunknown"
