"""The Kubernetes backend's live API calls, made by the official client against a fake API server.

No cluster exists here, so `tests/kube_fake.py` serves custom objects on loopback with the
semantics the backend relies on in a cluster: resourceVersion conflicts, generateName, merge
patches, label selectors, and kube-apiserver's Status bodies for 403/404/409.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from loopstack.core.errors import Conflict, Forbidden, NotFound, Unavailable
from loopstack.core.modelspec import load_model_spec
from loopstack.core.processes import free_port
from loopstack.core.settings import KubernetesSettings, Settings
from loopstack.serving.backends.base import Deployment
from loopstack.serving.backends.kubernetes import (
    KubernetesBackend,
    render_inference_service,
    split_of,
)
from loopstack.serving.traffic import TrafficSplit

from tests.conftest import PROJECT_DIR
from tests.kube_fake import (
    INFERENCE_SERVICES,
    WORKFLOWS,
    FakeKube,
    fake_kube,
    forbidden,
    missing_crd,
)

NS = "ml-team"  # not the default namespace, so a call that ignores the setting shows
MODEL = "bike-demand"
ISVC = INFERENCE_SERVICES.path(NS, MODEL)
INFERENCE_SERVICES_ARGS = ("serving.kserve.io", "v1beta1", NS, "inferenceservices")
CHAMPION = TrafficSplit(model=MODEL, champion="3", revision=1)
CANARY = TrafficSplit(
    model=MODEL, champion="3", challenger="4", mode="canary", canary_percent=10, revision=2
)
TRAIN = {"model": MODEL, "start": "2024-01-01", "end": "2024-03-01"}


def settings() -> Settings:
    """Settings of a Kubernetes deployment of the shipped project in namespace NS."""
    return Settings(
        project_dir=PROJECT_DIR, backend="kubernetes", kubernetes=KubernetesSettings(namespace=NS)
    )


def backend_at(host: str) -> tuple[KubernetesBackend, client.ApiClient]:
    """A backend whose official client talks to `host`, and that client (for closing)."""
    api_client = client.ApiClient(client.Configuration(host=host))
    return KubernetesBackend(settings(), api=client.CustomObjectsApi(api_client)), api_client


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with fake_kube() as fake:
        yield fake


@pytest.fixture
def backend(kube: FakeKube) -> Iterator[KubernetesBackend]:
    made, api_client = backend_at(kube.url)
    try:
        yield made
    finally:
        api_client.close()


def argo_reports(
    kube: FakeKube, run_id: str, phase: str, started: str, finished: str | None = None, **extra: Any
) -> None:
    """Play Argo's controller: write the Workflow's status as it would."""

    def write(workflow: dict[str, Any]) -> None:
        status = {"phase": phase, "startedAt": started, "finishedAt": finished, **extra}
        workflow["status"] = status

    kube.update(WORKFLOWS, NS, run_id, write)


def epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp."""
    return datetime.fromisoformat(stamp).astimezone(UTC).timestamp()


# --- InferenceServices ----------------------------------------------------------------------
def test_first_deploy_creates_the_service_and_a_canary_replaces_it_carrying_the_split(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    first = backend.deploy(CHAMPION)
    assert (first.detail, first.split) == ("created", CHAMPION)
    assert [(r.method, r.path) for r in kube.requests] == [
        ("GET", ISVC),
        ("POST", INFERENCE_SERVICES.path(NS)),
    ]
    created_version = kube.get(INFERENCE_SERVICES, NS, MODEL)["metadata"]["resourceVersion"]

    second = backend.deploy(CANARY)
    assert (second.detail, second.split) == ("updated", CANARY)
    [put] = kube.requests_for("PUT", ISVC)
    assert put.body["metadata"]["resourceVersion"] == created_version
    stored = kube.get(INFERENCE_SERVICES, NS, MODEL)
    predictor = stored["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["storageUri"] == "models:/bike-demand/4"
    assert stored["metadata"]["annotations"] == {
        "loopstack.io/champion": "3",
        "loopstack.io/challenger": "4",
        "loopstack.io/traffic-mode": "canary",
        "loopstack.io/revision": "2",
    }
    assert backend.deployments() == [Deployment(split=CANARY, ready=False)]
    reread = backend.deployment(MODEL)
    assert reread is not None and reread.split == CANARY


def test_deployments_list_only_loopstack_services_and_report_kserve_readiness(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    backend.deploy(CHAMPION)
    # Someone else's InferenceService in the same namespace: not Loopstack's to report.
    foreign = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "aaa-foreign"},
        "spec": {"predictor": {"model": {"storageUri": "s3://elsewhere"}}},
    }
    backend.api.create_namespaced_custom_object(*INFERENCE_SERVICES_ARGS, foreign)

    def kserve_ready(isvc: dict[str, Any]) -> None:
        isvc["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}

    kube.update(INFERENCE_SERVICES, NS, MODEL, kserve_ready)
    assert backend.deployments() == [Deployment(split=CHAMPION, ready=True)]
    [listing] = kube.requests_for("GET", INFERENCE_SERVICES.path(NS))
    assert listing.query == {"labelSelector": "app.kubernetes.io/managed-by=loopstack"}


def test_a_concurrent_write_between_read_and_replace_is_retried_with_the_fresh_version(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    backend.deploy(CHAMPION)
    read_version = kube.get(INFERENCE_SERVICES, NS, MODEL)["metadata"]["resourceVersion"]
    written: list[str] = []

    def other_writer() -> None:
        def change(isvc: dict[str, Any]) -> None:
            isvc["metadata"]["annotations"]["loopstack.io/champion"] = "9"

        written.append(kube.update(INFERENCE_SERVICES, NS, MODEL, change)["metadata"]["resourceVersion"])  # fmt: skip

    kube.interleave("GET", ISVC, other_writer)
    result = backend.deploy(CANARY)

    puts = kube.requests_for("PUT", ISVC)
    assert [p.body["metadata"]["resourceVersion"] for p in puts] == [read_version, written[0]]
    assert len(kube.requests_for("GET", ISVC)) == 3  # the first deploy's, then one per attempt
    # Replace semantics: the backend's split wins over the other writer's annotation.
    assert split_of(kube.get(INFERENCE_SERVICES, NS, MODEL)) == CANARY == result.split


def test_a_service_created_concurrently_after_the_read_is_replaced_not_failed(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    def other_creator() -> None:
        kube.create(INFERENCE_SERVICES, NS, render_inference_service(CHAMPION, backend.settings))

    kube.interleave("GET", ISVC, other_creator)  # the first read says 404, then it exists
    result = backend.deploy(CANARY)

    assert [r.method for r in kube.requests if r.path.startswith(INFERENCE_SERVICES.path(NS))] == [
        "GET", "POST", "GET", "PUT"]  # fmt: skip
    assert result.detail == "updated"
    assert split_of(kube.get(INFERENCE_SERVICES, NS, MODEL)) == CANARY


def test_a_service_that_keeps_changing_gives_up_with_conflict_after_five_attempts(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    backend.deploy(CHAMPION)

    def other_writer() -> None:
        kube.update(INFERENCE_SERVICES, NS, MODEL, lambda isvc: None)

    kube.interleave("GET", ISVC, other_writer, times=None)
    with pytest.raises(Conflict, match="kept changing; retry the deploy"):
        backend.deploy(CANARY)
    assert len(kube.requests_for("PUT", ISVC)) == 5
    assert split_of(kube.get(INFERENCE_SERVICES, NS, MODEL)) == CHAMPION


def test_rbac_denial_is_forbidden_naming_the_namespace_and_rbac(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    kube.script(ISVC, forbidden(INFERENCE_SERVICES, "get", NS, MODEL))
    with pytest.raises(Forbidden) as denied:
        backend.deploy(CANARY)
    assert f"namespace {NS!r}" in denied.value.message
    assert "RBAC" in denied.value.message
    assert [r.method for r in kube.requests] == ["GET"]  # a 403 is not taken for "absent"


def test_a_missing_kserve_crd_is_unavailable_and_never_taken_for_a_missing_service(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    kube.script("/apis/serving.kserve.io/", missing_crd())
    with pytest.raises(Unavailable, match=r"CRD is not installed.*install KServe/Argo"):
        backend.deploy(CHAMPION)
    assert [r.method for r in kube.requests] == ["GET"]
    with pytest.raises(Unavailable, match="install KServe/Argo"):
        backend.deployments()


def test_a_missing_argo_crd_makes_pipeline_runs_unavailable(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    kube.script("/apis/argoproj.io/", missing_crd())
    with pytest.raises(Unavailable, match="install KServe/Argo"):
        backend.run_pipeline("train", TRAIN)
    with pytest.raises(Unavailable, match="install KServe/Argo"):
        backend.pipeline_run("loopstack-train-x7k2q")


def test_an_unreachable_api_server_is_unavailable() -> None:
    # A port nothing listens on: connection refused, as when the API server is down.
    backend, api_client = backend_at(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(Unavailable, match="Kubernetes API is unreachable"):
            backend.deploy(CHAMPION)
    finally:
        api_client.close()


# --- Workflows ------------------------------------------------------------------------------
def test_running_a_pipeline_submits_a_workflow_from_its_template_with_the_resolved_params(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    run = backend.run_pipeline("train", TRAIN)

    [post] = kube.requests_for("POST", WORKFLOWS.path(NS))
    training = load_model_spec(settings().models_dir, MODEL).training
    expected = {
        **TRAIN,
        "branches": json.dumps(list(range(len(training.param_grid)))),
        "labels": training.labels,
        "sabotage": "none",
        "as_of": "now",
    }
    assert post.body["spec"]["workflowTemplateRef"] == {"name": "loopstack-train"}
    assert {p["name"]: p["value"] for p in post.body["spec"]["arguments"]["parameters"]} == expected
    assert post.body["metadata"]["generateName"] == "loopstack-train-"
    # The server names the run; the backend reports the name it got, not the prefix.
    assert kube.names(WORKFLOWS, NS) == [run.run_id]
    assert run.run_id.startswith("loopstack-train-") and len(run.run_id) == 21
    assert (run.pipeline, run.params, run.status) == ("train", expected, "running")


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        ("Pending", "running"),
        ("Running", "running"),
        ("Succeeded", "succeeded"),
        ("Failed", "failed"),
        ("Error", "failed"),
    ],
)
def test_each_argo_phase_reads_as_the_run_status(
    kube: FakeKube, backend: KubernetesBackend, phase: str, status: str
) -> None:
    run = backend.run_pipeline("train", TRAIN)
    argo_reports(kube, run.run_id, phase, "2024-05-01T10:00:00Z")
    assert backend.pipeline_run(run.run_id).status == status


def test_listed_runs_are_loopstacks_newest_first_with_argo_times_errors_and_steps(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    started = {"old": "2024-05-01T09:00:00Z", "mid": "2024-05-01T10:00:00Z", "new": "2024-05-01T11:00:00Z"}  # fmt: skip
    ids = {}
    # Submitted in an order that neither the start times nor the server's name order follow.
    for key in ("mid", "new", "old"):
        ids[key] = backend.run_pipeline("train", TRAIN).run_id
    argo_reports(kube, ids["mid"], "Succeeded", started["mid"], "2024-05-01T10:05:30Z")
    argo_reports(kube, ids["new"], "Running", started["new"])
    pods = {
        f"{ids['old']}-1": {"type": "Pod", "displayName": "validate", "templateName": "validate", "phase": "Succeeded"},
        f"{ids['old']}-2": {"type": "Pod", "displayName": "train(0:0)", "templateName": "train", "phase": "Failed"},
        ids["old"]: {"type": "DAG", "displayName": ids["old"], "phase": "Failed"},
    }  # fmt: skip
    failure = "child 'train(0:0)' failed"
    argo_reports(kube, ids["old"], "Failed", started["old"], "2024-05-01T09:01:00Z", message=failure, nodes=pods)  # fmt: skip
    foreign = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "nightly-etl-"},
        "spec": {"workflowTemplateRef": {"name": "nightly-etl"}},
    }
    backend.api.create_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "workflows", foreign)

    listed = backend.pipeline_runs()
    assert [(r.run_id, r.status) for r in listed] == [
        (ids["new"], "running"),
        (ids["mid"], "succeeded"),
        (ids["old"], "failed"),
    ]
    assert [r.run_id for r in backend.pipeline_runs(limit=1)] == [ids["new"]]
    done = backend.pipeline_run(ids["mid"])
    assert (done.started_at, done.finished_at) == (
        epoch(started["mid"]),
        epoch("2024-05-01T10:05:30Z"),
    )
    failed = backend.pipeline_run(ids["old"])
    assert failed.error == failure
    assert {t.key: (t.step, t.status) for t in failed.tasks} == {
        "validate": ("validate", "succeeded"),
        "train(0:0)": ("train", "failed"),
    }


def test_reading_an_unknown_run_is_not_found(kube: FakeKube, backend: KubernetesBackend) -> None:
    with pytest.raises(NotFound, match="Workflow loopstack-train-x7k2q: not found"):
        backend.pipeline_run("loopstack-train-x7k2q")
    [get] = kube.requests
    assert (get.method, get.path) == ("GET", WORKFLOWS.path(NS, "loopstack-train-x7k2q"))


def test_cancel_merge_patches_terminate_and_the_terminated_run_reads_cancelled(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    run = backend.run_pipeline("train", TRAIN)
    argo_reports(kube, run.run_id, "Running", "2024-05-01T10:00:00Z")

    answered = backend.cancel_pipeline_run(run.run_id)

    [patch] = kube.requests_for("PATCH", WORKFLOWS.path(NS, run.run_id))
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"spec": {"shutdown": "Terminate"}}
    stored = kube.get(WORKFLOWS, NS, run.run_id)
    assert stored["spec"]["shutdown"] == "Terminate"
    assert stored["spec"]["workflowTemplateRef"] == {"name": "loopstack-train"}  # merged
    assert answered.status == "running"  # Argo's controller has not stopped the pods yet
    # What Argo's controller writes once it has stopped every pod of a terminated Workflow.
    argo_reports(kube, run.run_id, "Failed", "2024-05-01T10:00:00Z", "2024-05-01T10:00:09Z",
                 message="Stopped with strategy 'Terminate'")  # fmt: skip
    assert backend.pipeline_run(run.run_id).status == "cancelled"
