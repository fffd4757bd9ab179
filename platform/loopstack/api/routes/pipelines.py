"""Pipelines: definitions, runs (through the configured backend), run status, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from loopstack.api.services import Services
from loopstack.pipelines.loader import load_pipelines
from loopstack.pipelines.state import RunState

__all__ = ["router"]


class RunRequest(BaseModel):
    """Parameters of a pipeline run (strings, as on the command line and in Argo)."""

    params: dict[str, str] = Field(default_factory=dict)


def router(services: Services) -> APIRouter:
    """Routes under /v1/pipelines."""
    api = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])

    @api.get("")
    def list_pipelines() -> list[dict[str, Any]]:
        """Every pipeline definition with its parameters and steps."""
        return [
            {
                "name": p.name,
                "description": p.description,
                "params": [
                    {"name": x.name, "default": x.default, "help": x.help} for x in p.params
                ],
                "steps": [
                    {"name": s.name, "after": list(s.after), "sweep": s.sweep} for s in p.steps
                ],
            }
            for p in load_pipelines(services.settings.pipelines_dir).values()
        ]

    @api.get("/runs")
    def list_runs(limit: int = Query(20, ge=1, le=500)) -> list[RunState]:
        """The most recent runs, newest first."""
        return services.backend.pipeline_runs(limit)

    @api.get("/runs/{run_id}")
    def get_run(run_id: str) -> RunState:
        """One run's state (tasks, attempts, errors)."""
        return services.backend.pipeline_run(run_id)

    @api.post("/runs/{run_id}/cancel")
    def cancel_run(run_id: str) -> RunState:
        """Stop a run and every step process."""
        return services.backend.cancel_pipeline_run(run_id)

    @api.post("/{name}/runs", status_code=202)
    def start_run(name: str, body: RunRequest) -> RunState:
        """Start a run; it goes on in the background (poll `GET /v1/pipelines/runs/{id}`)."""
        return services.backend.run_pipeline(name, body.params)

    return api
