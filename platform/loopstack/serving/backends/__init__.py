"""Backends: where models are deployed and pipelines run (embedded processes or Kubernetes)."""

from loopstack.serving.backends.base import Backend, Deployment
from loopstack.serving.backends.factory import open_backend

__all__ = ["Backend", "Deployment", "open_backend"]
