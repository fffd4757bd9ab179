"""Evaluation metrics for both tasks, shared by training (holdout) and live quality."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["regression_metrics", "classification_metrics", "task_metrics", "better"]


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """RMSE, MAE and MAPE (MAPE over non-zero targets only: zero counts would make it infinite)."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    nonzero = y != 0
    mape = (
        float(np.mean(np.abs((y[nonzero] - p[nonzero]) / y[nonzero])))
        if nonzero.any()
        else float("nan")
    )
    return {
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
        "mae": float(np.mean(np.abs(y - p))),
        "mape": mape,
    }


def classification_metrics(y_true: Any, proba: Any, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1, AUC, log loss and expected calibration error."""
    # Imported here: scikit-learn takes seconds to import, which the API's start would pay.
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(proba, dtype=float), 1e-12, 1 - 1e-12)
    hard = (p >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y, hard)),
        "precision": float(skm.precision_score(y, hard, zero_division=0)),
        "recall": float(skm.recall_score(y, hard, zero_division=0)),
        "f1": float(skm.f1_score(y, hard, zero_division=0)),
        "auc": float(skm.roc_auc_score(y, p)) if both_classes else float("nan"),
        "logloss": float(skm.log_loss(y, p, labels=[0, 1])),
        "calibration_error": expected_calibration_error(y, p),
    }


def expected_calibration_error(y: Any, p: Any, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over equal-width bins, weighted by size."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / max(len(y), 1))


def task_metrics(task: str, y_true: Any, output: Any) -> dict[str, float]:
    """The metrics of a task: `output` is a prediction (regression) or P(class 1)."""
    if task == "classification":
        return classification_metrics(y_true, output)
    return regression_metrics(y_true, output)


def better(value: float, reference: float, higher_is_better: bool, margin: float) -> bool:
    """Whether `value` is no worse than `reference` by more than the relative `margin`."""
    if np.isnan(reference):
        return True
    if higher_is_better:
        return value >= reference - abs(reference) * margin
    return value <= reference + abs(reference) * margin
