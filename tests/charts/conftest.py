"""Render the chart once per values set (helm template), shared by the chart tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.tools import CHART, run, tool

# Every CRD group the chart renders resources of: without these `helm template` (no cluster)
# silently drops the templates gated on .Capabilities.APIVersions.
API_VERSIONS = (
    "serving.kserve.io/v1alpha1",
    "serving.kserve.io/v1beta1",
    "argoproj.io/v1alpha1",
    "kafka.strimzi.io/v1",
    "monitoring.coreos.com/v1",
)
NAMESPACE = "loopstack"
VALUES = {
    "default": [],
    "external": [CHART / "ci" / "external-values.yaml"],
    "s3": [CHART / "ci" / "s3-values.yaml"],
    "tls": [CHART / "ci" / "tls-values.yaml"],
}


def helm_template(values: list[Path], *extra: str) -> str:
    """`helm template` of the chart with every CRD group available; fails the test on error."""
    argv = [tool("helm"), "template", "loopstack", str(CHART), "--namespace", NAMESPACE]
    for api in API_VERSIONS:
        argv += ["--api-versions", api]
    for file in values:
        argv += ["--values", str(file)]
    done = run(*argv, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def rendered() -> dict[str, str]:
    """Rendered YAML text per values set."""
    return {name: helm_template(files) for name, files in VALUES.items()}


@pytest.fixture(scope="session")
def manifests(rendered: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Rendered objects per values set."""
    return {
        name: [doc for doc in yaml.safe_load_all(text) if doc] for name, text in rendered.items()
    }


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of a kind (and name)."""
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
