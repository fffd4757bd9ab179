"""Choose the backend named by `Settings.backend`."""

from __future__ import annotations

from loopstack.core.settings import Settings
from loopstack.serving.backends.base import Backend

__all__ = ["open_backend"]


def open_backend(settings: Settings) -> Backend:
    """The configured backend, built once at an entry point."""
    if settings.backend == "kubernetes":
        from loopstack.serving.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(settings)
    from loopstack.serving.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(settings)
