"""Deployments and traffic: `POST /v1/models/{name}/deployments`, `GET .../traffic`, `GET /v1/deployments`."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from loopstack.api.audit import remember_before
from loopstack.api.auth import principal_of
from loopstack.core import deadline
from loopstack.core.errors import NotFound
from loopstack.registry.timeouts import warm_mlflow_client
from loopstack.serving.backends.base import Deployment

__all__ = ["DeployBody", "router"]


class DeployBody(BaseModel):
    """What to deploy: a version (or alias) as champion, canary or shadow challenger."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1)
    """Version number or alias (`champion`, `challenger`); pinned at deploy time."""
    canary: int | None = Field(default=None, ge=1, le=100)
    """Percent of requests the version answers as a canary challenger."""
    shadow: bool = False
    """Mirror every request to the version, off the response path."""
    sticky: bool = False
    """Route a canary by a hash of the entity key."""
    force: bool = False
    """End a rollout in flight (recorded as a decision) instead of being refused with 409."""


def _view(deployment: Deployment) -> dict[str, Any]:
    return deployment.model_dump(mode="json")


def router(services: Any) -> APIRouter:
    """The serving routes over `services.deployment_service` (a `DeploymentService`)."""
    api = APIRouter(tags=["serving"])

    @api.post("/v1/models/{name}/deployments", status_code=201)
    def deploy(name: str, body: DeployBody, request: Request) -> dict[str, Any]:
        """Deploy a version of a model (alias resolved and pinned now): as champion, it is promoted;
        during a rollout of another challenger, 409 unless `force` ends that rollout; 503 naming
        the component that did not answer, with nothing started after `api.request_deadline_s`."""
        with suppress(NotFound):  # a first deployment has nothing before it
            remember_before(request, _view(services.deployment_service.traffic(name)))
        warm_mlflow_client()  # once per process: imports are not the request's time
        with deadline.within(services.settings.api.request_deadline_s):
            return _view(
                services.deployment_service.deploy(
                    name, body.version, canary=body.canary, shadow=body.shadow, sticky=body.sticky,
                    force=body.force, actor=f"api:{principal_of(request).subject}",
                )
            )  # fmt: skip

    @api.get("/v1/models/{name}/traffic")
    def traffic(name: str) -> dict[str, Any]:
        """The model's current traffic split."""
        return _view(services.deployment_service.traffic(name))

    @api.get("/v1/deployments")
    def deployments() -> dict[str, Any]:
        """Every deployed model and its split."""
        return {"items": [_view(d) for d in services.deployment_service.deployments()]}

    return api
