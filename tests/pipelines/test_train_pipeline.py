"""`loopstack pipeline run train` end to end: real MLflow, real Feast, CLI → API → runner."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from loopstack.pipelines.compile import BRANCH_ARG, RUN_DIR_ARG, argo_params, compile_pipeline
from loopstack.pipelines.loader import load_pipeline
from mlflow.tracking import MlflowClient

from tests.conftest import Stack

pytestmark = pytest.mark.integration

# The label file's window: bike-demand retrains from feedback only (`training.labels`), so a
# first training asks for the file's labels.
WINDOW = ("--from", "2011-01-01", "--to", "2011-03-01", "--param", "labels=all")


def _run(stack: Stack, *extra: str) -> dict[str, Any]:
    result = stack.cli("pipeline", "run", "train", "--model", "bike-demand", *WINDOW, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = httpx.get(f"{stack.settings.api_url}/v1/pipelines/runs", params={"limit": 1}).json()
    state: dict[str, Any] = runs[0]
    assert state["status"] == "succeeded"
    return state


@pytest.fixture(scope="module")
def trained(stack: Stack) -> list[dict[str, Any]]:
    """Two runs of the train pipeline on Jan-Feb 2011."""
    return [_run(stack), _run(stack)]


def test_train_registers_a_version_with_lineage_and_the_challenger_alias(
    stack: Stack, trained: list[dict[str, Any]]
) -> None:
    client = MlflowClient(stack.settings.mlflow_tracking_uri)
    first = client.get_model_version("bike-demand", "1")
    tags = first.tags
    for key in ("feature_service", "feature_views", "training_window", "data_fingerprint",
                "git_sha", "pipeline_run_id", "params", "metrics", "gate"):  # fmt: skip
        assert f"loopstack.{key}" in tags, key
    assert tags["loopstack.pipeline_run_id"] == trained[0]["run_id"]
    window = json.loads(tags["loopstack.training_window"])
    assert window["start"].startswith("2011-01-01") and window["end"].startswith("2011-03-01")
    assert json.loads(tags["loopstack.gate"])["passed"] is True
    # Lineage of the labels: all from the label file (nothing was fed back yet).
    rows = window["rows"]
    assert json.loads(tags["loopstack.labels"]) == {"file": rows, "feedback": 0, "human": 0}
    step_dir = Path(trained[0]["run_dir"]) / "steps" / "training-set"
    meta = json.loads((step_dir / "meta.json").read_text())
    assert meta["labels"] == {"choice": "all", "file": rows, "feedback": 0, "human": 0}
    lineage = pd.read_parquet(step_dir / "labels.parquet")
    assert len(lineage) == rows and set(lineage["label_origin"]) == {"file"}
    assert first.run_id and client.get_run(first.run_id).data.tags["mlflow.parentRunId"]
    assert client.get_registered_model("bike-demand").aliases["challenger"] == "2"


def test_promote_then_rollback_restores_the_previous_champion(
    stack: Stack, trained: list[dict[str, Any]]
) -> None:
    assert stack.cli("models", "promote", "bike-demand", "--version", "1").returncode == 0
    assert "champion is now version 2" in stack.cli("models", "promote", "bike-demand").stdout
    listing = stack.cli("models", "list").stdout
    assert "bike-demand" in listing
    rollback = stack.cli("models", "rollback", "bike-demand", "--reason", "test")
    assert rollback.returncode == 0 and "champion is now version 1" in rollback.stdout
    history = httpx.get(f"{stack.settings.api_url}/v1/models/bike-demand").json()["alias_history"]
    assert [h["version"] for h in history if h["alias"] == "champion"] == ["1", "2", "1"]
    again = stack.cli("models", "rollback", "bike-demand")
    assert again.returncode == 4 and "no previous champion" in again.stderr
    lineage = stack.cli("models", "lineage", "bike-demand")
    assert '"feature_service": "bike_demand_v1"' in lineage.stdout


def test_steps_ran_in_distinct_processes_with_the_compiled_commands(
    stack: Stack, trained: list[dict[str, Any]]
) -> None:
    state = trained[0]
    pids = [pid for task in state["tasks"] for pid in task["pids"]]
    assert len(pids) == len(set(pids)) == len(state["tasks"])
    template = compile_pipeline(
        load_pipeline(stack.settings.pipelines_dir, "train"), stack.settings
    )
    containers = {
        t["name"]: t["container"]
        for t in template.to_dict()["spec"]["templates"]
        if "container" in t
    }
    placeholders = {
        v: state["params"][k]
        for k, v in argo_params(load_pipeline(stack.settings.pipelines_dir, "train")).items()
    }
    for task in state["tasks"]:
        expected = []
        for arg in containers[task["step"]]["args"]:
            for placeholder, value in placeholders.items():
                arg = arg.replace(placeholder, value)
            arg = arg.replace(RUN_DIR_ARG, state["run_dir"]).replace(
                BRANCH_ARG, task["branch"] or ""
            )
            expected.append(arg)
        assert task["argv"][1:] == expected, task["key"]
        assert containers[task["step"]]["command"] == ["python"]


def test_sweep_branches_overlapped_in_time(trained: list[dict[str, Any]]) -> None:
    branches = [t for t in trained[0]["tasks"] if t["step"] == "train"]
    assert len(branches) == 3
    overlaps = [
        (a["key"], b["key"])
        for i, a in enumerate(branches)
        for b in branches[i + 1 :]
        if a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
    ]
    assert overlaps, branches


def test_unchanged_code_and_inputs_hit_the_step_cache(trained: list[dict[str, Any]]) -> None:
    second = {t["key"]: t["status"] for t in trained[1]["tasks"]}
    assert second["validate"] == "cached"
    assert second["train[0]"] == "cached"
    assert second["training-set"] == "succeeded" and second["register"] == "succeeded"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "no-such-model", *WINDOW), "no spec"),
        (
            ("--model", "bike-demand", "--from", "2011-03-01", "--to", "2011-01-01"),
            "inverted window",
        ),
        (("--model", "bike-demand", "--from", "March", "--to", "2011-01-01"), "ISO dates"),
        (("--model", "bike-demand", *WINDOW, "--param", "colour=red"), "no parameter(s) colour"),
        (("--model", "bike-demand", *WINDOW[:4], "--param", "labels=any"), "labels must be"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    stack: Stack, args: tuple[str, ...], message: str
) -> None:
    before = len(httpx.get(f"{stack.settings.api_url}/v1/pipelines/runs").json())
    result = stack.cli("pipeline", "run", "train", *args)
    assert result.returncode in (2, 3) and message in result.stderr, result.stderr
    assert len(httpx.get(f"{stack.settings.api_url}/v1/pipelines/runs").json()) == before


def test_an_empty_window_fails_the_run_and_registers_nothing(
    stack: Stack, trained: list[dict[str, Any]]
) -> None:
    client = MlflowClient(stack.settings.mlflow_tracking_uri)
    versions = len(client.search_model_versions("name='bike-demand'"))
    result = stack.cli(
        "pipeline",
        "run",
        "train",
        "--model",
        "bike-demand",
        "--from",
        "2012-01-01",
        "--to",
        "2012-02-01",
    )
    assert result.returncode == 7
    assert "training-set" in result.stderr and "has no rows in [2012-01-01" in result.stderr
    time.sleep(0.5)
    assert len(client.search_model_versions("name='bike-demand'")) == versions


def test_pipelines_are_listed(stack: Stack) -> None:
    found = httpx.get(f"{stack.settings.api_url}/v1/pipelines").json()
    assert {p["name"] for p in found} == {"train", "batch-score"}
    train = next(p for p in found if p["name"] == "train")
    assert [s["name"] for s in train["steps"]] == [
        "training-set",
        "validate",
        "train",
        "evaluate",
        "reference",
        "fit-detectors",
        "register",
    ]
    assert Path(stack.settings.pipelines_dir / "train.py").is_file()


def test_batch_score_writes_the_requested_versions_predictions(
    stack: Stack, trained: list[dict[str, Any]]
) -> None:
    result = stack.cli(
        "pipeline", "run", "batch-score", "--model", "bike-demand",
        "--from", "2011-02-20", "--to", "2011-02-27", "--param", "version=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run = httpx.get(f"{stack.settings.api_url}/v1/pipelines/runs", params={"limit": 1}).json()[0]
    frame = pd.read_parquet(Path(run["run_dir"]) / "steps" / "score" / "predictions.parquet")
    labels = pd.read_parquet(
        stack.settings.feature_repo_dir / "data" / "bike_demand_labels.parquet"
    )
    in_window = labels["event_timestamp"].between("2011-02-20", "2011-02-27", inclusive="left")
    assert len(frame) == int(in_window.sum())
    assert set(frame["version"]) == {"1"}
    assert frame["prediction"].between(0, 2000).all()
