"""Models: registered versions, aliases, promote, rollback, lineage."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, date, datetime, time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, model_validator

from loopstack.api.audit import remember_before
from loopstack.api.auth import principal_of
from loopstack.api.services import Services
from loopstack.core import deadline
from loopstack.core.errors import InvalidInput
from loopstack.core.modelspec import ModelSpec, load_model_spec, scan_model_specs
from loopstack.registry.errors import ModelNotRegistered
from loopstack.registry.timeouts import warm_mlflow_client
from loopstack.serving.backends.base import Deployment

__all__ = ["router"]


class PromoteRequest(BaseModel):
    """Make a version the champion (default: the current challenger)."""

    version: str | None = Field(default=None, pattern=r"^\d+$")
    reason: str = Field(default="promoted by hand", min_length=1, max_length=500)
    force: bool = False
    """End a rollout in flight (recorded) instead of being refused with 409."""


REMOTE_SCHEMES = frozenset(
    {"runs", "models", "mlflow-artifacts", "s3", "gs", "wasbs", "abfss", "hdfs", "http", "https"}
)
"""Model URIs the API reads; never `file:` or a bare path (another machine's disk, or its own)."""


class RegisterRequest(BaseModel):
    """Adopt an MLflow model trained outside Loopstack: exactly one of `run_id`, `uri`, `archive`."""

    run_id: str | None = Field(default=None, pattern=r"^[0-9a-zA-Z_-]{1,64}$")
    """A run of the stack's MLflow that logged the model."""
    artifact_path: str = Field(default="model", min_length=1, max_length=200)
    """The model's name in that run (`name=` of `log_model`)."""
    uri: str | None = Field(default=None, min_length=1, max_length=2000)
    """Any MLflow model URI the API can read (`runs:/`, `models:/`, a path, a store URL)."""
    archive: str | None = None
    """A model folder as a base64 tar.gz (what `--path` sends)."""
    path: str | None = Field(default=None, max_length=2000)
    """The folder `archive` was made from, recorded in lineage."""
    as_of: datetime | None = None
    """Model time of the decisions (a replay's clock); default: now."""
    holdout_from: date | None = None
    """Start of the labelled window the gate holds out from (with `holdout_to`); default: the
    champion's training window, else the last `trigger.training_window_days`."""
    holdout_to: date | None = None
    """End (exclusive) of that window."""

    @model_validator(mode="after")
    def _one_source(self) -> RegisterRequest:
        given = [k for k in ("run_id", "uri", "archive") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of run_id, uri, archive (got {given or 'none'})")
        scheme = self.uri.partition(":")[0].lower() if self.uri and ":" in self.uri else ""
        if self.uri is not None and scheme not in REMOTE_SCHEMES:
            # A path would be read from the API's own disk: the client uploads folders instead.
            raise ValueError(
                f"uri must be a model URI ({', '.join(s + ':' for s in sorted(REMOTE_SCHEMES))}), "
                f"not {self.uri!r}; send a local folder with `--path` (it is uploaded)"
            )
        if (self.holdout_from is None) != (self.holdout_to is None):
            raise ValueError("give both holdout_from and holdout_to, or neither")
        if self.holdout_from and self.holdout_to and self.holdout_from >= self.holdout_to:
            raise ValueError("holdout_from must be before holdout_to")
        return self


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
        for name in set(registered) - set(rows):  # logged into MLflow by hand, say
            rows[name] = {
                "task": None,
                "feature_service": None,
                "status": "no spec",
                "error": f"registered in MLflow, but models/{name}/model.yaml does not exist; "
                "add a spec to serve and watch it",
            }
        out = []
        for name in sorted(rows):
            found = registered.get(name)
            out.append(
                {
                    "model": name,
                    **rows[name],
                    "latest_version": found.latest_version if found else None,
                    "latest_origin": _origin(name, found.latest_version) if found else None,
                    "aliases": found.aliases if found else {},
                    "loop_failure": failing.get(name),
                }
            )
        return out

    def _origin(name: str, version: str | None) -> str | None:
        """`outside` for a version adopted by `models register`, `pipeline` for a trained one."""
        if version is None:
            return None
        lineage = services.model_registry.version(name, version).lineage
        if "origin" in lineage:
            return "outside"
        return "pipeline" if "pipeline_run_id" in lineage else "outside (registered by hand)"

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

    @api.post("/{name}/versions")
    def register(name: str, body: RegisterRequest, request: Request) -> dict[str, Any]:
        """Adopt a model trained elsewhere: its signature is checked against the spec, it is
        gated against the champion on a holdout from the feature store (when there are both),
        registered with what lineage can be known, and, if it passes, made the `challenger`
        the loop takes through shadow → canary → promote."""
        from loopstack.registry.adoption import Source

        load_model_spec(services.settings.models_dir, name)
        archive = None
        if body.run_id is not None:
            source = Source("run", body.run_id, body.artifact_path)
        elif body.uri is not None:
            source = Source("uri", body.uri)
        else:
            source = Source("path", body.path or "uploaded folder")
            try:
                archive = base64.b64decode(body.archive or "", validate=True)
            except binascii.Error as exc:
                raise InvalidInput(f"archive is not valid base64: {exc}") from exc
        try:
            aliases = services.model_registry.aliases(name)
        except ModelNotRegistered:
            aliases = {}
        remember_before(request, {"aliases": aliases})
        actor = f"api:{principal_of(request).subject}"
        window = None
        if body.holdout_from is not None and body.holdout_to is not None:
            window = (
                datetime.combine(body.holdout_from, time(), UTC),
                datetime.combine(body.holdout_to, time(), UTC),
            )
        return services.adoption.adopt(name, source, actor=actor, archive=archive,
                                       as_of=_iso(body.as_of), holdout=window)  # fmt: skip

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
        warm_mlflow_client()  # once per process: imports are not the request's time
        with deadline.within(services.settings.api.request_deadline_s):
            actor = _before(name, request)
            return _moved(name, services.deployment_service.promote(
                name, body.version, body.reason, actor=actor, force=body.force))  # fmt: skip

    @api.post("/{name}/rollback")
    def rollback(name: str, body: RollbackRequest, request: Request) -> dict[str, Any]:
        """Restore the champion before the current one: alias and serving move as one."""
        warm_mlflow_client()  # once per process: imports are not the request's time
        with deadline.within(services.settings.api.request_deadline_s):
            actor = _before(name, request)
            return _moved(name, services.deployment_service.rollback(
                name, body.reason, actor=actor, force=body.force))  # fmt: skip

    return api


def _iso(moment: datetime | None) -> str | None:
    """A model time as decisions carry it: ISO 8601 in UTC (naive means UTC)."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
