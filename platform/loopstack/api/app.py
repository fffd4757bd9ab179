"""Build the management API application from settings: the API's composition root."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from loopstack import __version__
from loopstack.api.audit import install_audit
from loopstack.api.auth import authorizer
from loopstack.api.errors import install_error_handlers
from loopstack.api.idempotency import install_idempotency
from loopstack.api.routes import (
    audit,
    auth,
    drift,
    features,
    feedback,
    loop,
    models,
    pipelines,
    serving,
)
from loopstack.api.routes.events import events_router
from loopstack.api.services import Services
from loopstack.core.settings import Settings
from loopstack.registry.timeouts import warm_mlflow_client

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    services: Services | None = None,
) -> FastAPI:
    """Create the management API for one set of settings."""
    shared = services or Services(settings, registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # In the background: /healthz answers meanwhile; a registry call waits for it.
        threading.Thread(target=warm_mlflow_client, name="mlflow-warm", daemon=True).start()
        yield
        shared.close()

    app = FastAPI(
        dependencies=[Depends(authorizer(shared))],
        lifespan=lifespan,
        title="Loopstack management API",
        version=__version__,
        description="Models, deployments and traffic, pipelines, feedback, quality, drift, history.",
    )
    install_error_handlers(app)
    install_audit(app, shared)
    install_idempotency(app, lambda: shared.idempotency)  # after audit: it wraps it
    for area in (models, loop, pipelines, serving, drift, feedback, features, auth, audit):
        app.include_router(area.router(shared))
    app.include_router(events_router(shared.event_service))
    metrics_registry = shared.metrics_registry

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """Liveness and identity of this API."""
        return {"status": "ok", "version": __version__, "backend": settings.backend}

    @app.get("/metrics", tags=["health"])
    def metrics() -> Response:
        """Prometheus metrics of the management API."""
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    return app
