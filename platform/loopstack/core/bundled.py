"""Files the package ships beside its code, so an installed wheel needs no checkout.

`loopstack/bundled/` holds the built-in pipelines and the drift runtime's sources and lock. In a
checkout its files are links to the sources of truth, the top-level `pipelines/` and
`platform/drift-runtime/` (`make bundle` refreshes them; the wheel holds copies).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUILTIN_PIPELINES", "BUNDLED", "DRIFT_RUNTIME_SOURCE"]

BUNDLED = Path(__file__).resolve().parents[1] / "bundled"
"""The folder of shipped files inside the installed package."""
BUILTIN_PIPELINES = BUNDLED / "pipelines"
"""`train`, `batch-score`, ...: used when the project's `pipelines/` does not define them."""
DRIFT_RUNTIME_SOURCE = BUNDLED / "drift-runtime"
"""The drift runtime's `src/`, `requirements.txt` (exported from its `uv.lock`) and project file."""
