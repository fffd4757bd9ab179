"""Run the management API under uvicorn: `python -m loopstack.api.server` (HTTPS with `tls.*`)."""

from __future__ import annotations

import uvicorn

from loopstack.api.app import create_app
from loopstack.core.settings import load_settings
from loopstack.registry.timeouts import use_mlflow_timeouts

__all__ = ["main"]


def main() -> None:
    """Entry point of the management API process."""
    settings = load_settings()
    use_mlflow_timeouts(settings.mlflow)
    tls = settings.server_tls
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.api.port,
        log_level="warning",
        access_log=False,
        **(tls.uvicorn_options() if tls is not None else {}),
    )


if __name__ == "__main__":
    main()
