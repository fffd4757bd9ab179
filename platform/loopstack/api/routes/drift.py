"""Drift route: it only translates HTTP to the drift consumer's read table (`DriftQueries`).

- `GET /v1/models/{name}/drift`: the latest reported windows of a model (newest first), each
  with its per-feature tests (statistic, effect size, p-value, threshold, drifted).
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query

from loopstack.monitoring.drift.queries import DriftQueries

__all__ = ["DriftServices", "router"]


class DriftServices(Protocol):
    """What the router needs of the composition root."""

    @property
    def drift(self) -> DriftQueries:
        """Reads of the drift consumer's store (built once)."""


def router(services: DriftServices) -> APIRouter:
    """The drift route on `services.drift`."""
    api = APIRouter(tags=["drift"])

    @api.get("/v1/models/{name}/drift")
    def model_drift(
        name: str,
        version: str | None = None,
        last: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> dict[str, Any]:
        """The latest `last` drift windows of a model (optionally one version), newest first."""
        return {"model": name, "windows": services.drift.windows(name, last, version)}

    return api
