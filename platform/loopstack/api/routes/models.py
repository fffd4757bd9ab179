"""Models: registered versions, aliases, promote, rollback, lineage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from loopstack.api.audit import remember_before
from loopstack.api.auth import principal_of
from loopstack.api.services import Services
from loopstack.core.errors import InvalidInput
from loopstack.core.modelspec import ModelSpec, load_model_spec, scan_model_specs
from loopstack.registry.errors import ModelNotRegistered
from loopstack.serving.backends.base import Deployment

__all__ = ["router"]


class PromoteRequest(BaseModel):
    """Make a version the champion (default: the current challenger)."""

    version: str | None = Field(default=None, pattern=r"^\d+$")
    reason: str = Field(default="promoted by hand", min_length=1, max_length=500)
    force: bool = False
    """End a rollout in flight (recorded) instead of being refused with 409."""


class RollbackRequest(BaseModel):
    """Restore the previous champion."""

    reason: str = Field(default="rolled back by hand", min_length=1, max_length=500)
    force: bool = False
    """End a rollout in flight (recorded) instead of being refused with 409."""


def router(services: Services) -> APIRouter:
    """Routes under /v1/models."""
    api = APIRouter(prefix="/v1/models", tags=["models"])

    @api.get("")
    def list_models() -> list[dict[str, Any]]:
        """Every model with a spec, with its registered aliases and latest version; a model whose
        spec does not load is listed with `status: broken` and the `error` naming the fix, and
        `loop_failure` says why the loop controller cannot advance a model (None when it can)."""
        registered = {m.model: m for m in services.model_registry.models()}
        failing = services.loop.failing()
        specs, broken = scan_model_specs(services.settings.models_dir)
        rows: dict[str, dict[str, Any]] = {
            spec.name: {"task": spec.task, "feature_service": spec.feature_service, "status": "ok"}
            for spec in specs
        }
        for name, reason in broken.items():
            rows[name] = {
                "task": None,
                "feature_service": None,
                "status": "broken",
                "error": reason,
            }
        out = []
        for name in sorted(rows):
            found = registered.get(name)
            out.append(
                {
                    "model": name,
                    **rows[name],
                    "latest_version": found.latest_version if found else None,
                    "aliases": found.aliases if found else {},
                    "loop_failure": failing.get(name),
                }
            )
        return out

    @api.get("/{name}")
    def show_model(name: str) -> dict[str, Any]:
        """A model's spec summary, aliases, versions (newest first) and alias history; with a
        spec that does not load, `status: broken` and its `error` (its versions still show);
        `loop_failure`: why the loop controller cannot advance it, if it cannot."""
        try:
            spec: ModelSpec | None = load_model_spec(services.settings.models_dir, name)
            health = {"status": "ok"}
        except InvalidInput as exc:
            spec, health = None, {"status": "broken", "error": exc.message}
        try:
            versions = [v.model_dump() for v in services.model_registry.versions(name)]
            aliases = services.model_registry.aliases(name)
            history = services.model_registry.alias_history(name)
        except ModelNotRegistered:
            versions, aliases, history = [], {}, []
        return {
            "model": name,
            **health,
            "task": spec.task if spec else None,
            "target": spec.target if spec else None,
            "aliases": aliases,
            "versions": versions,
            "alias_history": history,
            "loop_failure": services.loop.failing().get(name),
        }

    @api.get("/{name}/versions/{ref}/lineage")
    def lineage(name: str, ref: str) -> dict[str, Any]:
        """Lineage of a version (number or alias)."""
        info = services.model_registry.version(name, ref)
        return {
            "model": name,
            "version": info.version,
            "run_id": info.run_id,
            "lineage": info.lineage,
        }

    def _before(name: str, request: Request) -> str:
        """Check the model, remember its aliases and split for the audit; the actor."""
        load_model_spec(services.settings.models_dir, name)
        split = services.deployment_service.backend.deployment(name)
        remember_before(request, {"aliases": services.model_registry.aliases(name),
                                  "split": split.split.model_dump(mode="json") if split else None})  # fmt: skip
        return f"api:{principal_of(request).subject}"

    def _moved(name: str, deployment: Deployment) -> dict[str, Any]:
        return {"model": name, "champion": deployment.split.champion,
                "deployment": deployment.model_dump(mode="json")}  # fmt: skip

    @api.post("/{name}/promote")
    def promote(name: str, body: PromoteRequest, request: Request) -> dict[str, Any]:
        """Make a version (default: the challenger) the champion: alias and serving move as one."""
        actor = _before(name, request)
        return _moved(name, services.deployment_service.promote(
            name, body.version, body.reason, actor=actor, force=body.force))  # fmt: skip

    @api.post("/{name}/rollback")
    def rollback(name: str, body: RollbackRequest, request: Request) -> dict[str, Any]:
        """Restore the champion before the current one: alias and serving move as one."""
        actor = _before(name, request)
        return _moved(name, services.deployment_service.rollback(
            name, body.reason, actor=actor, force=body.force))  # fmt: skip

    return api
