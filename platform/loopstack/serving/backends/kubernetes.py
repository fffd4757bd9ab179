"""The Kubernetes backend: KServe InferenceServices rendered from the same traffic split."""

from __future__ import annotations

from typing import Any

from loopstack.core.settings import Settings
from loopstack.serving.backends.base import Backend, Deployment
from loopstack.serving.traffic import TrafficSplit

__all__ = ["RUNTIME_NAME", "KubernetesBackend", "render_inference_service"]

RUNTIME_NAME = "loopstack-runtime"


def _model_uri(model: str, version: str) -> str:
    return f"models:/{model}/{version}"


def render_inference_service(split: TrafficSplit, settings: Settings) -> dict[str, Any]:
    """The InferenceService that carries `split`: KServe's canary keeps the previous revision.

    KServe routes `canaryTrafficPercent` to the latest revision (the challenger's model URI)
    and the rest to the last rolled-out one (the champion's).
    """
    serving_version = split.challenger if split.mode == "canary" else split.champion
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": "loopstack"},
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


class KubernetesBackend(Backend):
    """Renders KServe resources for each split (applying them to a cluster comes with the chart)."""

    name = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._rendered: dict[str, dict[str, Any]] = {}

    def deploy(self, split: TrafficSplit) -> Deployment:
        """Render the InferenceService for the split."""
        self._rendered[split.model] = render_inference_service(split, self.settings)
        return Deployment(split=split, ready=False, detail="rendered, not applied")

    def deployment(self, model: str) -> Deployment | None:
        """The split of the last rendered InferenceService of the model."""
        rendered = self._rendered.get(model)
        return None if rendered is None else _split_of(rendered)

    def deployments(self) -> list[Deployment]:
        """Every rendered InferenceService."""
        return [_split_of(r) for r in self._rendered.values()]


def _split_of(isvc: dict[str, Any]) -> Deployment:
    notes = isvc["metadata"]["annotations"]
    predictor = isvc["spec"]["predictor"]
    split = TrafficSplit(
        model=isvc["metadata"]["name"],
        champion=notes["loopstack.io/champion"],
        challenger=notes["loopstack.io/challenger"] or None,
        mode=notes["loopstack.io/traffic-mode"],
        canary_percent=predictor.get("canaryTrafficPercent", 0),
        revision=int(notes["loopstack.io/revision"]),
    )
    return Deployment(split=split, ready=False, detail="rendered, not applied")
