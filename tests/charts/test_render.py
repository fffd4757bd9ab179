"""helm lint/template, and every rendered object valid for Kubernetes 1.33 or its CRD."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.charts.conftest import VALUES, find
from tests.charts.tools import CHART, run, tool
from tests.crds import validate_custom_resource

pytestmark = pytest.mark.integration

KUBERNETES_VERSION = "1.33.0"
# API groups served by the Kubernetes API server itself; anything else is a custom resource.
CORE_GROUPS = {"", "apps", "policy", "rbac.authorization.k8s.io", "networking.k8s.io", "batch"}


def _group(obj: dict[str, Any]) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


@pytest.mark.parametrize("values", VALUES)
def test_lint_strict(values: str) -> None:
    argv = [tool("helm"), "lint", "--strict", str(CHART)]
    for file in VALUES[values]:
        argv += ["--values", str(file)]
    done = run(*argv)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", VALUES)
def test_core_objects_validate_strictly(
    manifests: dict[str, list[dict[str, Any]]], values: str
) -> None:
    errors = []
    for obj in manifests[values]:
        if _group(obj) not in CORE_GROUPS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("values", VALUES)
def test_custom_resources_validate_against_crds(
    manifests: dict[str, list[dict[str, Any]]], values: str
) -> None:
    custom = [o for o in manifests[values] if _group(o) not in CORE_GROUPS]
    assert custom, "no custom resources rendered: are the --api-versions passed?"
    for obj in custom:
        validate_custom_resource(obj)


def test_default_renders_every_component(manifests: dict[str, list[dict[str, Any]]]) -> None:
    objects = manifests["default"]
    kinds = {o["kind"] for o in objects}
    assert {
        "ClusterServingRuntime", "WorkflowTemplate", "CronWorkflow", "Kafka", "KafkaNodePool",
        "KafkaTopic", "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget",
    } <= kinds  # fmt: skip
    workloads = {
        o["metadata"]["name"] for o in objects if o["kind"] in {"Deployment", "StatefulSet"}
    }
    assert workloads == {
        "loopstack-api", "loopstack-feedback-consumer", "loopstack-drift-consumer",
        "loopstack-rollout-controller", "loopstack-mlflow", "loopstack-detector",
        "loopstack-postgresql", "loopstack-redis",
    }  # fmt: skip


def test_external_services_switch_in_chart_ones_off(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    objects = manifests["external"]
    names = {o["metadata"]["name"] for o in objects}
    assert not names & {"loopstack-mlflow", "loopstack-postgresql", "loopstack-redis"}
    assert not find(objects, "Kafka") and not find(objects, "KafkaTopic")
    # No password is generated: every credential comes from the operator's Secrets.
    assert not find(objects, "Secret")
    config = find(objects, "ConfigMap", "loopstack-config")[0]["data"]
    assert config["LOOPSTACK_MLFLOW__TRACKING_URI"] == "https://mlflow.example.internal"
    assert config["LOOPSTACK_EVENTS__KAFKA_BOOTSTRAP_SERVERS"].startswith(
        "kafka-0.example.internal"
    )


def test_every_namespaced_object_names_its_namespace(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    # `helm template -n` does not write metadata.namespace; the templates must.
    cluster_scoped = {"ClusterServingRuntime"}
    for obj in manifests["default"]:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == "loopstack", obj["metadata"]["name"]


def test_custom_resources_are_skipped_without_their_crds() -> None:
    # Without the operators installed a plain install still works (and NOTES would say so).
    done = run(tool("helm"), "template", "loopstack", str(CHART), "--namespace", "loopstack")
    assert done.returncode == 0, done.stderr
    groups = {_group(o) for o in yaml.safe_load_all(done.stdout) if o}
    assert groups <= CORE_GROUPS
