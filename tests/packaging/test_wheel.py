"""The wheel alone is Loopstack: installed into a fresh environment outside the repository, the
"Add your own model" guide (docs/own-model.md) runs as written, block by block.

The wheel is built from the checkout and installed, its dependencies at the lock's versions
(from uv's cache, offline), into a virtual environment under a temporary folder, and every command
runs there with the checkout absent: the working directory is temporary, PATH holds only that
environment, uv and the system, and PYTHONPATH is unset. The guide's blocks change nothing but
the ports (free ones) and skip the install block (done here, the same way). The model is the
one `loopstack init` scaffolds: scikit-learn's diabetes data set (a real public data set that
ships inside a PyPI package), trained, served, fed back and retrained.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopstack.core.processes import Supervisor, free_port, stop_group

from tests.conftest import PROJECT_DIR
from tests.packaging.test_bundle import UV, build_wheel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

GUIDE = PROJECT_DIR / "docs" / "own-model.md"
MODEL = "diabetes"
BLOCK_TIMEOUT_S = 600


def guide_blocks() -> list[str]:
    """The guide's `sh` blocks, in order."""
    return re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)


def _install(tmp: Path) -> Path:
    """The wheel into a fresh venv outside the checkout, its dependencies at the lock's versions
    (`uv sync --frozen --no-install-project`: the lock's files, from uv's cache); its bin folder."""
    wheel = build_wheel(tmp / "dist")
    venv = tmp / "venv"
    base = subprocess.run(
        [str(PROJECT_DIR / ".venv" / "bin" / "python"), "-c",
         "import sys; print(sys._base_executable)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [UV, "sync", "--quiet", "--offline", "--frozen", "--no-dev", "--no-install-project",
         "--python", base, "--project", str(PROJECT_DIR)],
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}, check=True, capture_output=True,
    )  # fmt: skip
    python = str(venv / "bin" / "python")
    for step in (["install", "--no-deps", str(wheel)], ["check"]):
        subprocess.run([UV, "pip", *step, "--quiet", "--offline", "--python", python],
                       check=True, capture_output=True)  # fmt: skip
    return venv / "bin"


def _env(tmp: Path, venv_bin: Path) -> dict[str, str]:
    tools = tmp / "tools"
    tools.mkdir()
    (tools / "uv").symlink_to(Path(UV).resolve())  # uv itself, not the checkout's tool folder
    env = {
        "HOME": str(tmp / "home"),
        "XDG_DATA_HOME": str(tmp / "home" / "data"),
        "PATH": os.pathsep.join([str(venv_bin), str(tools), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
        "UV_CACHE_DIR": subprocess.run(
            [UV, "cache", "dir"], check=True, capture_output=True, text=True
        ).stdout.strip(),
        "UV_OFFLINE": "1",
    }
    for setting in ("API__PORT", "MLFLOW__PORT", "SERVING__REST_PORT", "SERVING__GRPC_PORT",
                    "DRIFT__DETECTOR_PORT", "DRIFT__METRICS_PORT", "FEEDBACK__METRICS_PORT",
                    "LOOP__METRICS_PORT"):  # fmt: skip
        env[f"LOOPSTACK_{setting}"] = str(free_port())
    env["LOOPSTACK_LOOP__TICK_S"] = "0.5"
    return env


def _as_written(block: str, env: dict[str, str]) -> str:
    """Only the ports change: the guide's defaults become this test's free ports."""
    return block.replace("localhost:8780", f"127.0.0.1:{env['LOOPSTACK_SERVING__REST_PORT']}")


def _run_block(block: str, cwd: Path, env: dict[str, str], marker: Path) -> Path:
    """Run one block with bash (errors stop it); the directory it ends in."""
    script = f"set -euo pipefail\n{block}\npwd > {marker}\n"
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=BLOCK_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"guide block failed:\n{block}\n{done.stdout}\n{done.stderr}"
    print(f"{time.monotonic() - started:5.0f} s  {block.splitlines()[0]}")  # shown with -s
    return Path(marker.read_text().strip())


def _wait(what: str, check: Any, timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_the_guide_runs_as_written_from_the_wheel_outside_the_checkout(tmp_path: Path) -> None:
    venv_bin = _install(tmp_path)
    env = _env(tmp_path, venv_bin)
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run(
        [str(venv_bin / "python"), "-c", "import loopstack; print(loopstack.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(tmp_path / "venv")), where
    assert shutil.which("loopstack", path=env["PATH"]) == str(venv_bin / "loopstack")

    blocks = guide_blocks()
    assert "tool install" in blocks[0] and "pip install" in blocks[0]
    api = f"http://127.0.0.1:{env['LOOPSTACK_API__PORT']}"
    cwd, project = work, work / "my-project"
    try:
        for block in blocks[1:]:
            cwd = _run_block(_as_written(block, env), cwd, env, tmp_path / "cwd")
        assert cwd == project
        # The drift runtime came from the wheel's lock into the per-user folder.
        assert list((tmp_path / "home" / "data" / "loopstack").glob("drift-runtime-*/venv"))
        with httpx.Client(base_url=api, timeout=30) as http:
            runs = http.get("/v1/pipelines/runs", params={"limit": 10}).json()
            assert len(runs) == 2, runs  # the first training and the retraining

            def finished() -> Any:
                states = [http.get(f"/v1/pipelines/runs/{r['run_id']}").json() for r in runs]
                return states if all(r["status"] != "running" for r in states) else None

            for run in _wait("the retraining", finished):
                assert run["status"] == "succeeded", (run["run_id"], run.get("error"))
            lineage = http.get(f"/v1/models/{MODEL}/versions/1/lineage").json()
            assert lineage["lineage"]["git_sha"] == f"not a git repository ({project.resolve()})", (
                lineage
            )
            answer = json.loads((project / "answer.json").read_text())
            prediction = http.get(f"/v1/predictions/{answer['prediction_ids'][0]}").json()
            assert prediction["outcome"] is not None, prediction
    finally:
        if project.is_dir():
            subprocess.run(["loopstack", "down"], cwd=project, env=env, capture_output=True,
                           timeout=120, check=False)  # fmt: skip
        for leftover in sorted(Supervisor(project / ".loopstack").recorded(),
                               key=lambda p: p.name != "supervisor"):  # fmt: skip
            stop_group(leftover.pid, grace=2)
