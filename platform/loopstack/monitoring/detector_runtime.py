"""Where the drift runtime lives and how to start its detector server as a supervised process."""

from __future__ import annotations

import os
from pathlib import Path

from loopstack import __version__
from loopstack.core.processes import ProcessSpec
from loopstack.monitoring.errors import DriftRuntimeMissing

__all__ = [
    "DRIFT_PYTHON_ENV",
    "INSTALLED_MARK",
    "detector_server_spec",
    "drift_python",
    "user_runtime_dir",
]

DRIFT_PYTHON_ENV = "LOOPSTACK_DRIFT_PYTHON"
INSTALLED_MARK = ".installed"
"""Written last by the installer: a per-user runtime without it is incomplete."""
# platform/loopstack/monitoring/detector_runtime.py -> the repository root (editable install).
_PROJECT_DIR = Path(__file__).resolve().parents[3]
_CHECKOUT_VENV = Path("platform") / "drift-runtime" / ".venv" / "bin" / "python"


def user_runtime_dir() -> Path:
    """Where `loopstack drift-runtime install` puts the runtime for this user and version:
    `$XDG_DATA_HOME/loopstack/drift-runtime-<version>` (default `~/.local/share/...`)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "loopstack" / f"drift-runtime-{__version__}"


def drift_python(configured_path: Path | None = None, project_dir: Path | None = None) -> Path:
    """The drift environment's python: the configured one (`drift.python`,
    `$LOOPSTACK_DRIFT_PYTHON`), else a checkout's `platform/drift-runtime/.venv` (`make
    drift-env`), else the per-user runtime (`loopstack drift-runtime install`).

    Raises:
        DriftRuntimeMissing: None is installed (or the configured one does not exist).
    """
    configured = configured_path or os.environ.get(DRIFT_PYTHON_ENV)
    if configured:
        if not Path(configured).is_file():
            raise DriftRuntimeMissing(str(configured), configured=True)
        return Path(configured)
    for root in dict.fromkeys(r for r in (project_dir, _PROJECT_DIR) if r is not None):
        if (root / _CHECKOUT_VENV).is_file():
            return root / _CHECKOUT_VENV
    user = user_runtime_dir()
    if (user / INSTALLED_MARK).is_file() and (user / "venv" / "bin" / "python").is_file():
        return user / "venv" / "bin" / "python"
    raise DriftRuntimeMissing(str(user / "venv" / "bin" / "python"))


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
