"""Models: registered versions, aliases, promote, rollback, lineage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from loopstack.api.audit import remember_before
from loopstack.api.auth import principal_of
from loopstack.api.services import Services
from loopstack.core.modelspec import list_model_specs, load_model_spec
from loopstack.registry.errors import ModelNotRegistered

__all__ = ["router"]


class PromoteRequest(BaseModel):
    """Make a version the champion (default: the current challenger)."""

    version: str | None = Field(default=None, pattern=r"^\d+$")
    reason: str = Field(default="promoted by hand", min_length=1, max_length=500)


class RollbackRequest(BaseModel):
    """Restore the previous champion."""

    reason: str = Field(default="rolled back by hand", min_length=1, max_length=500)


def router(services: Services) -> APIRouter:
    """Routes under /v1/models."""
    api = APIRouter(prefix="/v1/models", tags=["models"])

    @api.get("")
    def list_models() -> list[dict[str, Any]]:
        """Every model with a spec, with its registered aliases and latest version."""
        registered = {m.model: m for m in services.model_registry.models()}
        out = []
        for spec in list_model_specs(services.settings.models_dir):
            found = registered.get(spec.name)
            out.append(
                {
                    "model": spec.name,
                    "task": spec.task,
                    "feature_service": spec.feature_service,
                    "latest_version": found.latest_version if found else None,
                    "aliases": found.aliases if found else {},
                }
            )
        return out

    @api.get("/{name}")
    def show_model(name: str) -> dict[str, Any]:
        """A model's spec summary, aliases, versions (newest first) and alias history."""
        spec = load_model_spec(services.settings.models_dir, name)
        try:
            versions = [v.model_dump() for v in services.model_registry.versions(name)]
            aliases = services.model_registry.aliases(name)
            history = services.model_registry.alias_history(name)
        except ModelNotRegistered:
            versions, aliases, history = [], {}, []
        return {
            "model": name,
            "task": spec.task,
            "target": spec.target,
            "aliases": aliases,
            "versions": versions,
            "alias_history": history,
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

    @api.post("/{name}/promote")
    def promote(name: str, body: PromoteRequest, request: Request) -> dict[str, Any]:
        """Move `champion` to a version (default: the challenger)."""
        load_model_spec(services.settings.models_dir, name)
        remember_before(request, {"aliases": services.model_registry.aliases(name)})
        actor = f"api:{principal_of(request).subject}"
        info = services.model_registry.promote(name, body.version, body.reason, actor=actor)
        return {"model": name, "champion": info.version}

    @api.post("/{name}/rollback")
    def rollback(name: str, body: RollbackRequest, request: Request) -> dict[str, Any]:
        """Restore the champion before the current one."""
        load_model_spec(services.settings.models_dir, name)
        remember_before(request, {"aliases": services.model_registry.aliases(name)})
        actor = f"api:{principal_of(request).subject}"
        info = services.model_registry.rollback(name, body.reason, actor=actor)
        return {"model": name, "champion": info.version}

    return api
