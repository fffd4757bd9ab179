"""Set up the drift runtime (alibi-detect 0.11.4, numpy < 1.25) for this user, outside any checkout.

The package ships the runtime's sources, its lock (`uv.lock`) and the lock exported with hashes
(`requirements.txt`): `install_drift_runtime` makes a virtual environment from them in
`user_runtime_dir()`, with `uv sync --frozen` when uv is on PATH (seconds from uv's cache, offline
then), else `venv` + `pip install -r requirements.txt`, and puts the sources on its path. The detector server then runs on that
environment's python (`detector_runtime.drift_python`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from loopstack.core.bundled import DRIFT_RUNTIME_SOURCE
from loopstack.monitoring.detector_runtime import INSTALLED_MARK, user_runtime_dir
from loopstack.monitoring.errors import DriftRuntimeInstallFailed

__all__ = ["install_drift_runtime"]

_PTH = "loopstack_drift.pth"


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    """Run one installer step; its output goes to the terminal (an install takes a while)."""
    try:
        done = subprocess.run(
            argv,
            check=False,
            stdout=sys.stderr,
            stderr=sys.stderr,
            env={**os.environ, **(env or {})},
        )
    except OSError as exc:
        raise DriftRuntimeInstallFailed(argv[0], str(exc)) from exc
    if done.returncode != 0:
        raise DriftRuntimeInstallFailed(" ".join(argv[:3]), f"exit code {done.returncode}")


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise DriftRuntimeInstallFailed(f"{python} -c sysconfig", out.stderr.strip()[-300:])
    return Path(out.stdout.strip())


def install_drift_runtime(
    dest: Path | None = None,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """Install the drift runtime into `dest` (default `user_runtime_dir()`); its python.

    Idempotent: an installed runtime is kept unless `force`. The base interpreter is the one
    running Loopstack (Python 3.11, as the runtime's lock requires).

    Raises:
        DriftRuntimeInstallFailed: A step failed (no network and no cache, disk full, ...).
    """
    dest = (dest or user_runtime_dir()).resolve()
    python = dest / "venv" / "bin" / "python"
    if (dest / INSTALLED_MARK).is_file() and python.is_file() and not force:
        say(f"the drift runtime is installed in {dest}")
        return python
    requirements = DRIFT_RUNTIME_SOURCE / "requirements.txt"
    if not requirements.is_file():
        raise DriftRuntimeInstallFailed(str(requirements), "missing from this installation")
    # A half-made runtime (an interrupted install) is redone from scratch; the mark comes last.
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(  # links become copies
        DRIFT_RUNTIME_SOURCE / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    project = dest / "project"
    project.mkdir()
    for name in ("requirements.txt", "pyproject.toml", "uv.lock", "PROTOCOL.md"):
        if (DRIFT_RUNTIME_SOURCE / name).is_file():
            shutil.copyfile(DRIFT_RUNTIME_SOURCE / name, project / name)
    uv = shutil.which("uv")
    say(f"installing the drift runtime into {dest} with {'uv' if uv else 'venv + pip'}")
    if uv:
        # `uv sync --frozen` installs the lock's exact files (from uv's cache when it has them).
        _run(
            [uv, "sync", "--frozen", "--no-dev", "--no-install-project", "--python",
             sys.executable, "--project", str(project)],
            env={"UV_PROJECT_ENVIRONMENT": str(dest / "venv")},
        )  # fmt: skip
    else:
        _run([sys.executable, "-m", "venv", str(dest / "venv")])
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
              "-r", str(project / "requirements.txt")])  # fmt: skip
    # The runtime's own package is its sources, on the path (no build backend needed).
    (_site_packages(python) / _PTH).write_text(f"{dest / 'src'}\n")
    (dest / INSTALLED_MARK).write_text(f"{requirements}\n")
    say(f"the drift runtime is installed: {python}")
    return python
