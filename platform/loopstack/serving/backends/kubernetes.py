"""The Kubernetes backend: KServe InferenceServices and Argo Workflows, from the same splits and
pipeline definitions the embedded backend runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from loopstack.core.errors import Conflict, Forbidden, NotFound, Unavailable
from loopstack.core.settings import Settings
from loopstack.pipelines.compile import template_name
from loopstack.pipelines.loader import load_pipeline
from loopstack.pipelines.plan import resolve_params
from loopstack.pipelines.state import RunState, TaskRecord
from loopstack.serving.backends.base import Backend, Deployment
from loopstack.serving.backends.kserve_resources import (
    DEFAULT_RESOURCES,
    MODEL_FORMAT,
    ingest_url,
)
from loopstack.serving.traffic import TrafficSplit

__all__ = ["KubernetesBackend", "render_inference_service", "render_workflow", "RUNTIME_NAME"]

RUNTIME_NAME = "loopstack-runtime"
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
ARGO = ("argoproj.io", "v1alpha1", "workflows")
T = TypeVar("T")
_PHASES = {
    "Pending": "running",
    "Running": "running",
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Error": "failed",
}


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of a Kubernetes RFC 3339 timestamp (`2024-05-01T10:00:00Z`)."""
    return datetime.fromisoformat(stamp).timestamp()


def _model_uri(model: str, version: str) -> str:
    return f"models:/{model}/{version}"


def render_inference_service(split: TrafficSplit, settings: Settings) -> dict[str, Any]:
    """The InferenceService that carries `split`: KServe's canary keeps the previous revision.

    KServe routes `canaryTrafficPercent` to the latest revision (the challenger's model URI)
    and the rest to the last rolled-out one (the champion's).
    """
    serving_version = split.challenger if split.mode == "canary" else split.champion
    predictor: dict[str, Any] = {
        # Every request and response goes to the ingest endpoint, paired into prediction events.
        "logger": {"mode": "all", "url": ingest_url(settings)},
        "model": {
            "modelFormat": {"name": MODEL_FORMAT},
            "resources": DEFAULT_RESOURCES,
            "runtime": RUNTIME_NAME,
            "storageUri": _model_uri(split.model, str(serving_version)),
            "env": [
                {"name": "LOOPSTACK_MODEL_NAME", "value": split.model},
                {"name": "LOOPSTACK_CHAMPION_VERSION", "value": split.champion},
                {"name": "LOOPSTACK_CHALLENGER_VERSION", "value": split.challenger or ""},
                {"name": "LOOPSTACK_TRAFFIC_MODE", "value": split.mode},
            ],
        },
    }
    if split.mode == "canary":
        predictor["canaryTrafficPercent"] = split.canary_percent
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": split.model,
            "namespace": settings.kubernetes.namespace,
            "labels": {"app.kubernetes.io/managed-by": "loopstack"},
            "annotations": {
                "loopstack.io/champion": split.champion,
                "loopstack.io/challenger": split.challenger or "",
                "loopstack.io/traffic-mode": split.mode,
                "loopstack.io/revision": str(split.revision),
            },
        },
        "spec": {"predictor": predictor},
    }


def render_workflow(pipeline: str, params: dict[str, str], settings: Settings) -> dict[str, Any]:
    """A Workflow that runs the pipeline's WorkflowTemplate with these parameters."""
    definition = load_pipeline(settings.pipelines_dir, pipeline)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{template_name(definition)}-",
            "namespace": settings.kubernetes.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "loopstack",
                "loopstack.io/pipeline": pipeline,
            },
        },
        "spec": {
            "workflowTemplateRef": {"name": template_name(definition)},
            "arguments": {"parameters": [{"name": k, "value": v} for k, v in params.items()]},
        },
    }


def split_of(isvc: dict[str, Any]) -> TrafficSplit:
    """Read the split an InferenceService carries back from its annotations."""
    notes = isvc["metadata"].get("annotations", {})
    predictor = isvc["spec"]["predictor"]
    return TrafficSplit(
        model=isvc["metadata"]["name"],
        champion=notes["loopstack.io/champion"],
        challenger=notes.get("loopstack.io/challenger") or None,
        mode=notes.get("loopstack.io/traffic-mode", "champion"),
        canary_percent=predictor.get("canaryTrafficPercent", 0),
        revision=int(notes.get("loopstack.io/revision", "0")),
    )


class KubernetesBackend(Backend):
    """Applies InferenceServices and submits Workflows through the official Kubernetes client."""

    name = "kubernetes"

    def __init__(self, settings: Settings, api: Any | None = None) -> None:
        self.settings = settings
        self._api = api

    @property
    def api(self) -> Any:
        """`CustomObjectsApi` from in-cluster config or the kubeconfig (created on first use)."""
        if self._api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                try:
                    config.load_kube_config()
                except (config.ConfigException, OSError) as exc:
                    raise Unavailable(
                        f"no Kubernetes cluster configured ({exc}); run inside the cluster or set "
                        "KUBECONFIG, or use LOOPSTACK_BACKEND=embedded"
                    ) from exc
            self._api = client.CustomObjectsApi()
        return self._api

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except HTTPError as exc:
            raise Unavailable(f"{what}: the Kubernetes API is unreachable ({exc})") from exc
        except ApiException as exc:
            if exc.status == 403:
                raise Forbidden(
                    f"{what}: the service account may not do this in namespace "
                    f"{self.settings.kubernetes.namespace!r}; check the chart's RBAC"
                ) from exc
            if exc.status == 404 and "the server could not find the requested resource" in str(
                exc.body
            ):
                raise Unavailable(
                    f"{what}: the CRD is not installed in the cluster; install KServe/Argo"
                ) from exc
            if exc.status == 404:
                raise NotFound(f"{what}: not found") from exc
            if exc.status == 409:
                raise Conflict(f"{what}: changed concurrently") from exc
            raise Unavailable(f"{what}: Kubernetes API answered {exc.status} {exc.reason}") from exc

    def deploy(self, split: TrafficSplit) -> Deployment:
        """Create or patch the InferenceService; on a 409 re-read and retry with the fresh version."""
        body = render_inference_service(split, self.settings)
        ns = self.settings.kubernetes.namespace
        for _ in range(5):
            try:
                current = self._call(
                    f"InferenceService {split.model}",
                    self.api.get_namespaced_custom_object,
                    *KSERVE[:2],
                    ns,
                    KSERVE[2],
                    split.model,
                )
            except NotFound:
                body["metadata"].pop("resourceVersion", None)  # deleted since an earlier read
                try:
                    created = self._call(
                        "create InferenceService",
                        self.api.create_namespaced_custom_object,
                        *KSERVE[:2],
                        ns,
                        KSERVE[2],
                        body,
                    )
                except Conflict:  # created concurrently since the read: replace it instead
                    continue
                return Deployment(split=split_of(created), ready=False, detail="created")
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                replaced = self._call(
                    "replace InferenceService",
                    self.api.replace_namespaced_custom_object,
                    *KSERVE[:2],
                    ns,
                    KSERVE[2],
                    split.model,
                    body,
                )
            except (Conflict, NotFound):  # changed or deleted since the read: read again
                time.sleep(0.2)
                continue
            return Deployment(split=split_of(replaced), ready=False, detail="updated")
        raise Conflict(f"InferenceService {split.model} kept changing; retry the deploy")

    def deployments(self) -> list[Deployment]:
        """Every InferenceService Loopstack manages in the namespace."""
        found = self._call(
            "list InferenceServices", self.api.list_namespaced_custom_object, *KSERVE[:2],
            self.settings.kubernetes.namespace, KSERVE[2], label_selector="app.kubernetes.io/managed-by=loopstack",
        )  # fmt: skip
        out = []
        for item in found.get("items", []):
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in item.get("status", {}).get("conditions", [])
            )
            out.append(Deployment(split=split_of(item), ready=ready))
        return out

    def run_pipeline(self, pipeline: str, params: dict[str, str]) -> RunState:
        """Submit a Workflow from the pipeline's WorkflowTemplate."""
        definition = load_pipeline(self.settings.pipelines_dir, pipeline)
        resolved = resolve_params(definition, params, self.settings)
        body = render_workflow(pipeline, resolved, self.settings)
        created = self._call(
            "submit Workflow",
            self.api.create_namespaced_custom_object,
            *ARGO[:2],
            self.settings.kubernetes.namespace,
            ARGO[2],
            body,
        )
        return self._state(created)

    def pipeline_runs(self, limit: int = 50) -> list[RunState]:
        """Loopstack's Workflows in the namespace, newest first."""
        found = self._call(
            "list Workflows", self.api.list_namespaced_custom_object, *ARGO[:2], self.settings.kubernetes.namespace,
            ARGO[2], label_selector="app.kubernetes.io/managed-by=loopstack",
        )  # fmt: skip
        runs = [self._state(w) for w in found.get("items", [])]
        return sorted(runs, key=lambda r: r.started_at, reverse=True)[:limit]

    def pipeline_run(self, run_id: str) -> RunState:
        """A Workflow's state."""
        found = self._call(
            f"Workflow {run_id}",
            self.api.get_namespaced_custom_object,
            *ARGO[:2],
            self.settings.kubernetes.namespace,
            ARGO[2],
            run_id,
        )
        return self._state(found)

    def cancel_pipeline_run(self, run_id: str) -> RunState:
        """Ask Argo to terminate the Workflow (it stops every pod)."""
        patched = self._call(
            f"terminate Workflow {run_id}", self.api.patch_namespaced_custom_object, *ARGO[:2],
            self.settings.kubernetes.namespace, ARGO[2], run_id, {"spec": {"shutdown": "Terminate"}},
        )  # fmt: skip
        return self._state(patched)

    def _state(self, workflow: dict[str, Any]) -> RunState:
        status = workflow.get("status", {})
        params = {
            p["name"]: str(p.get("value", ""))
            for p in workflow["spec"].get("arguments", {}).get("parameters", [])
        }
        tasks = [
            TaskRecord(
                key=node.get("displayName", name),
                step=node.get("templateName", ""),
                status=_PHASES.get(node.get("phase", ""), "pending"),
            )
            for name, node in status.get("nodes", {}).items()
            if node.get("type") == "Pod"
        ]
        run_status = _PHASES.get(status.get("phase", "Pending"), "running")
        # Argo fails a Workflow it terminated; Loopstack reports that as the cancel it was.
        if run_status == "failed" and workflow["spec"].get("shutdown"):
            run_status = "cancelled"
        started = status.get("startedAt") or workflow["metadata"].get("creationTimestamp")
        return RunState(
            run_id=workflow["metadata"].get("name", workflow["metadata"].get("generateName", "")),
            pipeline=workflow["metadata"].get("labels", {}).get("loopstack.io/pipeline", ""),
            params=params,
            run_dir="",
            status=run_status,
            started_at=_epoch(started) if started else time.time(),
            finished_at=_epoch(status["finishedAt"]) if status.get("finishedAt") else None,
            error=status.get("message", ""),
            tasks=tasks,
        )
