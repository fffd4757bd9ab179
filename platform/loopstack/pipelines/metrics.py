"""Evaluation metrics of every task, shared by training (holdout) and live quality.

Classifiers are scored on their class probabilities: a binary model on P(second class), so the
usual threshold metrics, AUC and calibration apply; a model of three or more classes on the whole
probability row (accuracy of the most likely class, macro-F1, log-loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "regression_metrics",
    "classification_metrics",
    "multiclass_metrics",
    "task_metrics",
    "better",
]

_EPS = 1e-12


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
    """Binary: accuracy, precision, recall, F1, macro-F1, AUC, log-loss and expected calibration
    error, from the 0/1 outcomes and P(class 1)."""
    # Imported here: scikit-learn takes seconds to import, which the API's start would pay.
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(proba, dtype=float), _EPS, 1 - _EPS)
    hard = (p >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y, hard)),
        "precision": float(skm.precision_score(y, hard, zero_division=0)),
        "recall": float(skm.recall_score(y, hard, zero_division=0)),
        "f1": float(skm.f1_score(y, hard, zero_division=0)),
        "macro_f1": float(skm.f1_score(y, hard, average="macro", labels=[0, 1], zero_division=0)),
        "auc": float(skm.roc_auc_score(y, p)) if both_classes else float("nan"),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "calibration_error": expected_calibration_error(y, p),
    }


def multiclass_metrics(y_index: Any, proba: Any) -> dict[str, float]:
    """Three or more classes: accuracy, macro-F1 and log-loss.

    Args:
        y_index: each row's true class, as its column in `proba`.
        proba: one row of class probabilities per outcome (columns in the model's class order).
    """
    from sklearn import metrics as skm

    y = np.asarray(y_index, dtype=int)
    p = np.asarray(proba, dtype=float)
    hard = p.argmax(axis=1)
    # Macro-F1 over the classes that occur (as outcome or prediction): a class absent from a
    # window would otherwise count as F1 0 and sink every small window.
    return {
        "accuracy": float(np.mean(hard == y)) if len(y) else float("nan"),
        "macro_f1": float(skm.f1_score(y, hard, average="macro", zero_division=0)),
        "log_loss": float(np.mean(row_log_loss(y, p))) if len(y) else float("nan"),
    }


def row_log_loss(y_index: Any, proba: Any) -> np.ndarray:
    """Per-row log-loss: -log of the probability given to the true class (clipped, renormalised
    rows, as scikit-learn's log_loss)."""
    p = np.clip(np.asarray(proba, dtype=float), _EPS, 1 - _EPS)
    p = p / p.sum(axis=1, keepdims=True)
    y = np.asarray(y_index, dtype=int)
    return np.asarray(-np.log(p[np.arange(len(y)), y]), dtype=float)


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


def class_index(labels: Any, classes: Sequence[Any]) -> np.ndarray:
    """Each label's position in `classes` (compared as text, so 1, 1.0 and "1" meet).

    Raises:
        ValueError: a label is not one of the classes (named with the allowed values).
    """
    position = {_text(c): i for i, c in enumerate(classes)}
    out = []
    for label in np.asarray(labels, dtype=object).tolist():
        found = position.get(_text(label))
        if found is None:
            raise ValueError(f"label {label!r} is not one of the classes {list(classes)}")
        out.append(found)
    return np.asarray(out, dtype=int)


def _text(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def task_metrics(
    task: str, y_true: Any, output: Any, classes: Sequence[Any] | None = None
) -> dict[str, float]:
    """The metrics of a task.

    `output` is the prediction (regression), P(class 1) with 0/1 outcomes (classification,
    one dimension), or class probabilities in the order of `classes` (classification, one row
    per outcome): two classes get the binary metrics, more the multiclass ones.
    """
    if task != "classification":
        return regression_metrics(y_true, output)
    proba = np.asarray(output, dtype=float)
    if proba.ndim == 1:
        return classification_metrics(y_true, proba)
    labels = classes if classes is not None else list(range(proba.shape[1]))
    index = class_index(y_true, labels)
    if proba.shape[1] == 2:
        return classification_metrics(index, proba[:, 1])
    return multiclass_metrics(index, proba)


def better(value: float, reference: float, higher_is_better: bool, margin: float) -> bool:
    """Whether `value` is no worse than `reference` by more than the relative `margin`."""
    if np.isnan(reference):
        return True
    if higher_is_better:
        return value >= reference - abs(reference) * margin
    return value <= reference + abs(reference) * margin
