"""Backends: the embedded one records splits durably; Kubernetes renders the same split."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopstack.core.settings import Settings
from loopstack.serving.backends import open_backend
from loopstack.serving.backends.kubernetes import render_inference_service, split_of
from loopstack.serving.traffic import TrafficSplit
from pydantic import ValidationError

from tests.crds import validate_custom_resource


def test_embedded_deploys_persist_and_revisions_increase(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path)
    first = open_backend(settings).deploy(TrafficSplit(model="m", champion="1"))
    canary = TrafficSplit(model="m", champion="1", challenger="2", mode="canary", canary_percent=10)
    second = open_backend(settings).deploy(canary)
    assert (first.split.revision, second.split.revision) == (1, 2)
    reopened = open_backend(settings)  # a new process sees the same state
    current = reopened.deployment("m")
    assert current is not None and current.split.canary_percent == 10
    assert [d.split.model for d in reopened.deployments()] == ["m"]


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "canary", "canary_percent": 10},
        {"mode": "canary", "challenger": "2", "canary_percent": 0},
        {"mode": "shadow"},
        {"canary_percent": 5},
    ],
)
def test_inconsistent_splits_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TrafficSplit(model="m", champion="1", **bad)  # type: ignore[arg-type]


def test_kubernetes_canary_matches_the_embedded_split(tmp_path: Path) -> None:
    split = TrafficSplit(
        model="bike-demand", champion="3", challenger="4", mode="canary", canary_percent=10
    )
    embedded = open_backend(Settings(project_dir=tmp_path)).deploy(split).split
    isvc = render_inference_service(embedded, Settings(project_dir=tmp_path, backend="kubernetes"))
    rendered = split_of(isvc)
    assert (rendered.champion, rendered.challenger, rendered.canary_percent) == ("3", "4", 10)
    assert rendered.revision == embedded.revision
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "models:/bike-demand/4"


@pytest.mark.parametrize("mode", ["champion", "canary", "shadow"])
def test_rendered_inference_services_validate_against_the_kserve_crd(mode: str) -> None:
    extra = {"challenger": "2"} if mode != "champion" else {}
    if mode == "canary":
        extra["canary_percent"] = 25  # type: ignore[assignment]
    split = TrafficSplit(model="credit-default", champion="1", mode=mode, **extra)  # type: ignore[arg-type]
    validate_custom_resource(render_inference_service(split, Settings()))
