"""What live quality needs to know about each model: task, segments, windows, alert metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from loopstack.core.errors import NotFound
from loopstack.core.modelspec import ModelSpec, QualitySpec, load_model_spec

__all__ = ["HIGHER_IS_BETTER", "ModelCatalog", "ModelInfo"]

log = logging.getLogger(__name__)

HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "auc": True}
"""Direction of the live-quality metrics; every other metric is better lower."""


@dataclass(frozen=True)
class ModelInfo:
    """The parts of a model spec live quality uses (defaults for a model without a spec)."""

    name: str
    task: str = "regression"
    segments: list[str] = field(default_factory=list)
    quality: QualitySpec = field(default_factory=QualitySpec)
    alert_metrics: tuple[str, ...] = ()
    has_spec: bool = False
    target: str = ""
    join_key: str = ""
    request_fields: tuple[str, ...] = ()
    feature_service: str = ""
    """What a training label row holds (`labels.py`): the join key, request fields and target."""

    @classmethod
    def from_spec(cls, spec: ModelSpec, extra_metrics: Iterable[str] = ()) -> ModelInfo:
        """Read the task, segments, quality spec and gate metric of a model spec."""
        metrics = tuple(dict.fromkeys([spec.gate.metric, *extra_metrics]))
        return cls(
            spec.name,
            spec.task,
            list(spec.segments),
            spec.quality,
            metrics,
            True,
            spec.target,
            spec.entity.join_key,
            tuple(spec.request_fields),
            spec.feature_service,
        )


class ModelCatalog:
    """Model specs by name, read once from `models/` (or given), with defaults for the rest."""

    def __init__(
        self,
        models_dir: Path | None = None,
        specs: Mapping[str, ModelSpec] | None = None,
        *,
        extra_metrics: Iterable[str] = (),
        default_join_window_s: float | None = None,
    ) -> None:
        self._dir = models_dir
        self._extra = tuple(extra_metrics)
        self._cache: dict[str, ModelInfo] = {
            name: ModelInfo.from_spec(spec, self._extra) for name, spec in (specs or {}).items()
        }
        self._default_quality = (
            QualitySpec(join_window_s=default_join_window_s)
            if default_join_window_s
            else QualitySpec()
        )

    def get(self, model: str | None) -> ModelInfo:
        """The info of `model`; defaults (regression, spec defaults) if it has no spec."""
        if model is None:
            return ModelInfo("?", quality=self._default_quality)
        if model not in self._cache:
            info = ModelInfo(model, quality=self._default_quality)
            if self._dir is not None:
                try:
                    info = ModelInfo.from_spec(load_model_spec(self._dir, model), self._extra)
                except NotFound:
                    log.warning("feedback: model %r has no spec; using regression defaults", model)
            self._cache[model] = info
        return self._cache[model]
