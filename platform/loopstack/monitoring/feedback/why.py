"""Why a prediction came out as it did: its inputs, features, version lineage, explanation, outcome.

One read of the feedback read model (what the serving runtime logged, sensitive fields already
masked there) and one of the registry (the lineage of the version that answered). Explanations
are only those asked for at serving time: recomputing one later would need the version loaded
here and could differ from what the caller was shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from loopstack.core.errors import NotFound
from loopstack.monitoring.feedback.queries import QualityQueries

if TYPE_CHECKING:
    from loopstack.registry.registry import VersionInfo

__all__ = ["NO_EXPLANATION", "PredictionWhy", "VersionLookup"]

NO_EXPLANATION = (
    "no explanation was requested for this prediction; send the request with explain=true "
    "(`?explain=true` on v1, the parameter `explain: true` on v2 and gRPC) to get one"
)


class VersionLookup(Protocol):
    """What `PredictionWhy` needs of the model registry."""

    def version(self, model: str, ref: str) -> VersionInfo:
        """One registered version with its run id and lineage."""


class PredictionWhy:
    """Answers `GET /v1/predictions/{id}/why` from the read model and the registry."""

    def __init__(self, queries: QualityQueries, registry: VersionLookup) -> None:
        self.queries = queries
        self.registry = registry

    def why(self, prediction_id: str) -> dict[str, Any]:
        """Inputs, features (with their feature-store times), model version and lineage,
        output, explanation (or a note saying how to get one) and outcome of a prediction.

        Raises:
            PredictionNotFound: no such prediction (yet).
        """
        found = self.queries.prediction(prediction_id)
        explanation = found["explanation"]
        return {
            "prediction_id": found["prediction_id"],
            "request_time": found["request_time"],
            "status": found["status"],
            "route": found["route"],
            "model": self._model(found["model"], found["version"]),
            "entity_key": found["entity_key"],
            "inputs": found["inputs"],
            "features": _features(found["features"]),
            "output": found["outputs"],
            "error": found["error"],
            "explanation": explanation,
            "explanation_note": None if explanation is not None else NO_EXPLANATION,
            "outcome": found["outcome"],
        }

    def _model(self, model: str, version: str) -> dict[str, Any]:
        """The version's identity and lineage; a deleted version keeps its name and a note."""
        out: dict[str, Any] = {"name": model, "version": version}
        try:
            info = self.registry.version(model, version)
        except NotFound as exc:  # the prediction outlives a deleted version
            return {**out, "run_id": None, "lineage": None, "lineage_note": exc.message}
        return {**out, "run_id": info.run_id, "lineage": info.lineage}


def _features(logged: dict[str, Any] | None) -> dict[str, Any] | None:
    """Feature-store values the model used, each with the event time Feast held it for."""
    if not logged:
        return None
    stamps = logged.get("timestamps") or {}
    return {
        "feature_service": logged.get("feature_service"),
        "values": [
            {"feature": name, "value": value, "event_timestamp": stamps.get(name)}
            for name, value in (logged.get("values") or {}).items()
        ],
    }
