"""The drift runtime outside a checkout: found, installed by `up` when missing, or named.

Installs for real, from the runtime's lock with `uv sync --frozen` (uv's cache: seconds, offline).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from loopstack.cli.stack_commands import _ensure_drift_runtime
from loopstack.core.settings import Settings
from loopstack.monitoring import detector_runtime
from loopstack.monitoring.detector_runtime import drift_python, user_runtime_dir
from loopstack.monitoring.errors import DriftRuntimeMissing

pytestmark = pytest.mark.integration  # installs a real environment (~1 GB, from uv's cache)


@pytest.fixture
def outside_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No checkout's `.venv` to fall back on, and a per-user data folder of the test's own."""
    monkeypatch.setattr(detector_runtime, "_PROJECT_DIR", tmp_path / "not-a-checkout")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.delenv("LOOPSTACK_DRIFT_PYTHON", raising=False)
    return tmp_path


def test_a_missing_runtime_names_the_one_command(outside_checkout: Path) -> None:
    with pytest.raises(DriftRuntimeMissing, match="`loopstack drift-runtime install`"):
        drift_python(None, outside_checkout)
    with pytest.raises(DriftRuntimeMissing, match="LOOPSTACK_DRIFT__PYTHON"):
        drift_python(outside_checkout / "nope" / "python", outside_checkout)


def test_up_installs_the_runtime_once_when_it_is_missing(outside_checkout: Path) -> None:
    settings = Settings(project_dir=outside_checkout)
    _ensure_drift_runtime(settings)
    python = drift_python(None, outside_checkout)
    assert python == user_runtime_dir() / "venv" / "bin" / "python"
    assert str(user_runtime_dir()).startswith(str(outside_checkout / "data" / "loopstack"))
    probe = subprocess.run(
        [str(python), "-c", "import alibi_detect, loopstack_drift.server, numpy; "
         "print(alibi_detect.__version__, numpy.__version__)"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    alibi, numpy = probe.stdout.split()
    assert alibi == "0.11.4", probe.stdout
    assert tuple(int(p) for p in numpy.split(".")[:2]) < (1, 25), probe.stdout
    marker = user_runtime_dir() / "venv" / "marker"
    marker.write_text("kept")
    _ensure_drift_runtime(settings)  # installed: nothing redone
    assert marker.read_text() == "kept"


def test_a_configured_runtime_that_is_missing_is_not_replaced(outside_checkout: Path) -> None:
    settings = Settings(project_dir=outside_checkout, drift={"python": outside_checkout / "py"})
    with pytest.raises(DriftRuntimeMissing, match="LOOPSTACK_DRIFT__PYTHON"):
        _ensure_drift_runtime(settings)
    assert not user_runtime_dir().exists()
