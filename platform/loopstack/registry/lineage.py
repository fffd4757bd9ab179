"""Lineage tags every registered version carries, under one `loopstack.` prefix."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["LINEAGE_PREFIX", "lineage_tags", "read_lineage"]

LINEAGE_PREFIX = "loopstack."

LINEAGE_KEYS = (
    "feature_service",
    "feature_views",
    "training_window",
    "data_fingerprint",
    "git_sha",
    "pipeline_run_id",
    "params",
    "metrics",
    "gate",
    "labels",
    "origin",
    "classes",
)


def lineage_tags(**values: Any) -> dict[str, str]:
    """Encode lineage values as MLflow tags (JSON for anything but strings)."""
    unknown = set(values) - set(LINEAGE_KEYS)
    if unknown:
        raise ValueError(f"unknown lineage keys: {sorted(unknown)}")
    return {
        f"{LINEAGE_PREFIX}{k}": v
        if isinstance(v, str)
        else json.dumps(v, sort_keys=True, default=str)
        for k, v in values.items()
    }


def read_lineage(tags: dict[str, str]) -> dict[str, Any]:
    """Decode the lineage tags of a version."""
    out: dict[str, Any] = {}
    for key in LINEAGE_KEYS:
        raw = tags.get(f"{LINEAGE_PREFIX}{key}")
        if raw is None:
            continue
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out
