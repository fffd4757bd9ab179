"""KServe resources of the Loopstack runtime: the ClusterServingRuntime and the logger target."""

from __future__ import annotations

from typing import Any

from loopstack.core.settings import Settings

__all__ = [
    "DEFAULT_RESOURCES",
    "MODEL_FORMAT",
    "RUNTIME_NAME",
    "ingest_url",
    "render_cluster_serving_runtime",
]

RUNTIME_NAME = "loopstack-runtime"
MODEL_FORMAT = "loopstack"
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "1", "memory": "2Gi"},
}
"""One worker per pod (scale with replicas): one core, room for two loaded versions."""


def ingest_url(settings: Settings) -> str:
    """Where InferenceService loggers post: the configured URL or the in-cluster runtime service."""
    from loopstack.serving.ingest import INGEST_PATH

    namespace = settings.kubernetes.namespace
    default = f"http://loopstack-serving.{namespace}.svc.cluster.local{INGEST_PATH}"
    return settings.serving.ingest_url or default


def _probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": 8080}, "timeoutSeconds": 3}


def render_cluster_serving_runtime(settings: Settings) -> dict[str, Any]:
    """The ClusterServingRuntime running `python -m loopstack.serving.server` from the image."""
    env = [
        # In a pod the kubelet and the mesh reach the server on the pod IP, not loopback.
        {"name": "LOOPSTACK_HOST", "value": "0.0.0.0"},
        {"name": "LOOPSTACK_BACKEND", "value": "kubernetes"},
        {"name": "LOOPSTACK_SERVING__REST_PORT", "value": "8080"},
        {"name": "LOOPSTACK_SERVING__GRPC_PORT", "value": "8081"},
        {"name": "LOOPSTACK_EVENTS__BACKEND", "value": "kafka"},
        {"name": "OMP_NUM_THREADS", "value": str(settings.serving.model_threads)},
    ]
    container = {
        "name": "kserve-container",
        "image": settings.kubernetes.image,
        "command": ["python", "-m", "loopstack.serving.server"],
        "env": env,
        "ports": [{"containerPort": 8080, "name": "http1", "protocol": "TCP"}],
        "resources": DEFAULT_RESOURCES,
        # As the chart's: ready once every deployed version answers, live while the process
        # answers (a pod loading a large model is not restarted), imports given 5 minutes.
        "startupProbe": {**_probe("/v2/health/live"), "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**_probe("/v2/health/ready"), "periodSeconds": 5},
        "livenessProbe": {**_probe("/v2/health/live"), "periodSeconds": 20, "failureThreshold": 6},
    }
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": RUNTIME_NAME, "labels": {"app.kubernetes.io/managed-by": "loopstack"}},
        "spec": {
            "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": True}],
            "protocolVersions": ["v1", "v2", "grpc-v2"],
            "multiModel": False,
            "containers": [container],
        },
    }
