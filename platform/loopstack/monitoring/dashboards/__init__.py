"""Grafana dashboards as code (grafana-foundation-sdk): `build_all()` and `python -m ... OUT_DIR`.

The chart ships the generated JSON (charts/loopstack/files/dashboards/); `charts/generate.py`
regenerates it and a test keeps it current.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from loopstack.monitoring.dashboards import drift, events, loop, quality, serving

__all__ = ["build_all"]

_BUILDERS = {
    "serving": serving.build,
    "quality": quality.build,
    "drift": drift.build,
    "loop": loop.build,
    "events": events.build,
}


def build_all() -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana JSON (a plain dict), by file stem."""
    out: dict[str, dict[str, Any]] = {}
    for name, build in _BUILDERS.items():
        out[name] = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    return out
