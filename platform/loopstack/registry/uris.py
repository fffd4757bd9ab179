"""MLflow's process-wide tracking and registry URIs, pointed at one server for one call.

`runs:/` and `models:/` artifact URIs resolve through those globals, not through an argument.
Two threads pointing them at different servers would cross, and a call that left them set would
send every later caller in the process (a test session, the API) to that server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["mlflow_pointed_at"]

_LOCK = threading.Lock()
_REGISTRY_ENV = "MLFLOW_REGISTRY_URI"


@contextmanager
def mlflow_pointed_at(tracking_uri: str) -> Iterator[None]:
    """Within the block MLflow's global URIs name `tracking_uri`; afterwards what they were."""
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _LOCK, _use_tracking_uri(tracking_uri):
        before, env_before = registry._registry_uri, os.environ.get(_REGISTRY_ENV)
        registry.set_registry_uri(tracking_uri)
        try:
            yield
        finally:
            registry._registry_uri = before
            if env_before is None:
                os.environ.pop(_REGISTRY_ENV, None)
            else:
                os.environ[_REGISTRY_ENV] = env_before
