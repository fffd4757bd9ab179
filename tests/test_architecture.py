"""The architecture page stays true: its layer order is the one import-linter enforces."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def test_architecture_picture_lists_the_enforced_layers_in_order() -> None:
    config = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    enforced = [name.removeprefix("loopstack.") for name in reversed(layers)]
    page = (PROJECT_DIR / "ARCHITECTURE.md").read_text()
    chain = re.search(r"^\s*(core\s*-->.*)$", page, re.MULTILINE)
    assert chain, "ARCHITECTURE.md lost its layer chain"
    assert [p.strip() for p in chain.group(1).split("-->")] == enforced


def test_no_importable_platform_package_shadows_the_stdlib() -> None:
    assert not (PROJECT_DIR / "platform" / "__init__.py").exists()
    import platform

    assert hasattr(platform, "python_version")
