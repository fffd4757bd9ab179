"""Training-time baselines: the metrics a version was registered with (its lineage)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from loopstack.core.errors import NotFound

__all__ = ["Baselines", "registry_baselines"]

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
