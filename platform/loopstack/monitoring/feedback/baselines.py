"""Training-time facts of registered versions (their lineage): the metrics a version was
registered with, and the classes of a model's champion."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from loopstack.core.errors import NotFound

__all__ = ["Baselines", "registry_baselines", "registry_classes"]

CLASSES_TTL_S = 30.0
"""How long the champion's classes are trusted before the registry is asked again (a promotion
may bring a version trained on other classes)."""

Baselines = Callable[[str, str], Mapping[str, float]]
"""(model, version) -> training metrics; empty when the version has none. Raises Unavailable when
the registry cannot answer (the windows are then evaluated later)."""


class _NoDecisions:
    """Reading baselines moves nothing, so it publishes no decisions."""

    def publish(self, topic: str, events: Any) -> None:
        """Never called by reads."""


def registry_baselines(tracking_uri: str) -> Baselines:
    """Baselines read from the MLflow registry (`loopstack.metrics` lineage tag), cached."""
    cache: dict[tuple[str, str], dict[str, float]] = {}
    registry: Any = None

    def baselines(model: str, version: str) -> Mapping[str, float]:
        nonlocal registry
        if (model, version) not in cache:
            if registry is None:
                from loopstack.registry.registry import ModelRegistry

                registry = ModelRegistry(tracking_uri, _NoDecisions(), source="loopstack/feedback")
            try:
                lineage = registry.version(model, version).lineage
            except NotFound:
                lineage = {}
            metrics = lineage.get("metrics") or {}
            cache[(model, version)] = {
                k: float(v) for k, v in metrics.items() if isinstance(v, int | float)
            }
        return cache[(model, version)]

    return baselines


def registry_classes(tracking_uri: str) -> Callable[[str], list[Any] | None]:
    """The classes recorded with a model's champion (lineage `classes`), cached for
    `CLASSES_TTL_S`; None when the model has no champion or it recorded none."""
    cache: dict[str, tuple[float, list[Any] | None]] = {}
    registry: Any = None

    def classes(model: str) -> list[Any] | None:
        nonlocal registry
        found = cache.get(model)
        if found is not None and time.monotonic() - found[0] < CLASSES_TTL_S:
            return found[1]
        if registry is None:
            from loopstack.registry.registry import ModelRegistry

            registry = ModelRegistry(tracking_uri, _NoDecisions(), source="loopstack/feedback")
        try:
            recorded = registry.version(model, "champion").lineage.get("classes")
        except NotFound:
            recorded = None
        value = list(recorded) if isinstance(recorded, list) and recorded else None
        cache[model] = (time.monotonic(), value)
        return value

    return classes
