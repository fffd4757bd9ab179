"""The inference server as a supervised process of the embedded stack (`loopstack up`)."""

from __future__ import annotations

import sys

from loopstack.core.processes import ProcessSpec
from loopstack.core.settings import Settings

__all__ = ["SERVING_START_TIMEOUT_S", "serving_process"]

SERVING_START_TIMEOUT_S = 90.0
"""Imports of kserve, mlflow and feast take ~20 s on a small machine; models load after live
(`serving.ready_timeout_s` bounds that)."""


def serving_process(settings: Settings, name: str = "serving") -> ProcessSpec:
    """`python -m loopstack.serving.server` on settings.host, REST and gRPC ports from settings."""
    url = settings.server_url(settings.serving.rest_port)
    return ProcessSpec(
        name=name,
        argv=[sys.executable, "-m", "loopstack.serving.server"],
        url=url,
        # Healthy is alive (the supervisor restarts a dead server, not a loading one); `up` then
        # waits for ready, every deployed version loaded, and when that times out leaves the
        # stack running so the operator can deploy another version through the API.
        health_url=f"{url}/v2/health/live",
        ready_url=f"{url}/v2/health/ready",
        port=settings.serving.rest_port,
        port_setting="LOOPSTACK_SERVING__REST_PORT",
        env=settings.as_env(),
        cwd=settings.project_dir,
    )
