"""Reference metrics computed with scikit-learn on a correctly joined frame (not with our code)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def reference_metrics(task: str, y: Any, score: Any) -> dict[str, float]:
    """What each live-quality metric must equal on these rows."""
    y = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    if task == "regression":
        nz = y != 0
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, s))),
            "mae": float(skm.mean_absolute_error(y, s)),
            "mape": float(skm.mean_absolute_percentage_error(y[nz], s[nz])),
        }
    hard = (s >= 0.5).astype(int)
    out = {
        "accuracy": float(skm.accuracy_score(y, hard)),
        "precision": float(skm.precision_score(y, hard, zero_division=0)),
        "recall": float(skm.recall_score(y, hard, zero_division=0)),
        "f1": float(skm.f1_score(y, hard, zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(s, 1e-12, 1 - 1e-12), labels=[0, 1])),
    }
    if len(np.unique(y)) == 2:
        out["auc"] = float(skm.roc_auc_score(y, s))
    bins = np.minimum((s * 10).astype(int), 9)
    out["calibration_error"] = float(
        sum(
            abs(y[bins == b].mean() - s[bins == b].mean()) * (bins == b).sum()
            for b in range(10)
            if (bins == b).any()
        )
        / len(y)
    )
    return out


def assert_close(actual: dict[str, Any], expected: dict[str, float], what: str) -> None:
    """Every expected metric matches to 1e-9 (relative)."""
    for name, value in expected.items():
        got = actual.get(name)
        assert got is not None, f"{what}: {name} missing"
        assert abs(got - value) <= 1e-9 * max(1.0, abs(value)), f"{what}: {name} {got} != {value}"
