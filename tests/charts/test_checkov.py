"""checkov's Kubernetes checks on the rendered chart; skips are justified in checkov.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.charts.tools import run, tool

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("checkov.yaml")


@pytest.mark.parametrize("values", ["default", "external"])
def test_checkov_passes(rendered: dict[str, str], values: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{values}.yaml"
    manifest.write_text(rendered[values])
    done = run(tool("checkov"), "--config-file", str(CONFIG), "-f", str(manifest), timeout=300)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    # Guard against a run that checked nothing (e.g. an unknown framework) and exited 0.
    assert "Passed checks:" in done.stdout and "Failed checks: 0" in done.stdout, done.stdout[
        -2000:
    ]
