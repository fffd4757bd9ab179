"""What live quality needs to know about each model: task, classes, segments, windows, alert
metrics.

A classifier's classes (what an outcome may be) come from its spec's `classes`; a spec without
them uses the classes recorded with the champion version (lineage `classes`, from its training
labels); a classifier with neither (no champion yet, or one registered before classes were
recorded) takes 0/1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopstack.core.errors import NotFound
from loopstack.core.modelspec import ModelSpec, QualitySpec, load_model_spec

__all__ = ["BINARY_CLASSES", "HIGHER_IS_BETTER", "ModelCatalog", "ModelInfo", "RecordedClasses"]

log = logging.getLogger(__name__)

HIGHER_IS_BETTER = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "macro_f1": True,
    "auc": True,
}
"""Direction of the live-quality metrics; every other metric is better lower."""

BINARY_CLASSES: tuple[Any, ...] = (0, 1)
"""The classes of a classifier that neither its spec nor its champion names."""

RecordedClasses = Callable[[str], "list[Any] | None"]
"""model -> the classes recorded with its champion version, or None when it has none. Raises
Unavailable when the registry cannot answer."""


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
    classes: tuple[Any, ...] | None = None
    """The spec's classes of a classifier, if it lists them."""

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
            spec.feature_service or "",
            tuple(spec.classes) if spec.classes is not None else None,
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
        recorded_classes: RecordedClasses | None = None,
    ) -> None:
        self._dir = models_dir
        self._recorded = recorded_classes
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

    def classes(self, model: str) -> list[Any] | None:
        """The labels an outcome of `model` may take (None: not a classifier).

        Raises:
            Unavailable: the classes are recorded with the champion and the registry is down.
        """
        info = self.get(model)
        if info.task != "classification":
            return None
        if info.classes is not None:
            return list(info.classes)
        recorded = self._recorded(model) if self._recorded is not None else None
        return list(recorded) if recorded else list(BINARY_CLASSES)
