"""Where the drift runtime lives and how to start its detector server as a supervised process."""

from __future__ import annotations

import os
from pathlib import Path

from loopstack.core.processes import ProcessSpec
from loopstack.monitoring.errors import DriftRuntimeMissing

__all__ = ["DRIFT_PYTHON_ENV", "detector_server_spec", "drift_python"]

DRIFT_PYTHON_ENV = "LOOPSTACK_DRIFT_PYTHON"
# platform/loopstack/monitoring/detector_runtime.py -> the repository root (editable install).
_PROJECT_DIR = Path(__file__).resolve().parents[3]


def drift_python(configured_path: Path | None = None, project_dir: Path | None = None) -> Path:
    """The drift environment's python: `$LOOPSTACK_DRIFT_PYTHON`, else the repo's `.venv`.

    Raises:
        DriftRuntimeMissing: It is not installed (`make drift-env`).
    """
    configured = configured_path or os.environ.get(DRIFT_PYTHON_ENV)
    root = project_dir or _PROJECT_DIR
    python = (
        Path(configured)
        if configured
        else root / "platform" / "drift-runtime" / ".venv" / "bin" / "python"
    )
    if not python.is_file():
        raise DriftRuntimeMissing(str(python))
    return python


def detector_server_spec(
    port: int,
    store: Path,
    host: str = "127.0.0.1",
    python: Path | None = None,
    name: str = "drift",
) -> ProcessSpec:
    """The detector server as a `ProcessSpec` for `loopstack.core.processes.Supervisor`."""
    url = f"http://{host}:{port}"
    argv = [
        str(python or drift_python()),
        "-m",
        "loopstack_drift.server",
        "--host",
        host,
        "--port",
        str(port),
        "--store",
        str(store),
    ]
    return ProcessSpec(
        name=name,
        argv=argv,
        health_url=f"{url}/healthz",
        port=port,
        port_setting="the drift server port",
        # alibi-detect imports transformers, which warns at import that torch/TF are absent.
        env={"TRANSFORMERS_VERBOSITY": "error"},
        url=url,
    )
