"""Rows of a `prediction.v1` event, as the drift windows keep them.

Only the fields both producers set are read: `inputs`, `outputs`, and the optional
`features.values` (the inference runtime logs one event per row with the model's input row;
the KServe logger ingest logs a request's instances, or v2 columns, in one event).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PREDICTION", "event_rows", "prediction_value"]

PREDICTION = "prediction"
"""Column holding the model's output, as in the reference sample."""


def prediction_value(outputs: Mapping[str, Any]) -> Any:
    """What the reference's `prediction` column holds: the prediction (regression), the
    probability of the second class (binary, like `predict_proba[:, 1]`) or the predicted class
    (three or more classes: a category)."""
    probabilities = outputs.get("probabilities")
    if isinstance(probabilities, Mapping | list) and len(probabilities) > 2:
        return outputs.get("prediction")
    if isinstance(probabilities, Mapping) and probabilities:
        return list(probabilities.values())[-1]
    if isinstance(probabilities, list) and probabilities:
        return probabilities[-1]
    return outputs.get("prediction")


def _columns_to_rows(columns: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """v2 columns (name -> list of equal length) as rows; None if they are not that shape."""
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if len(lengths) != 1 or any(not isinstance(v, list) for v in columns.values()):
        return None
    n = lengths.pop()
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def event_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The input rows of one successful prediction event, each with its `prediction`.

    Returns [] for an event that carries no usable rows (error status, positional instances,
    predictions that do not match the rows); the caller counts it.
    """
    if data.get("status") != "ok" or not isinstance(data.get("outputs"), Mapping):
        return []
    inputs = data.get("inputs")
    if not isinstance(inputs, Mapping):
        return []
    features = data.get("features")
    stored = features.get("values") if isinstance(features, Mapping) else None
    base = {k: v for k, v in (stored or {}).items() if not str(k).startswith("_")}
    inputs = {k: v for k, v in inputs.items() if not str(k).startswith("_")}
    prediction = data["outputs"].get(PREDICTION)
    instances = inputs.get("instances")
    rows: list[dict[str, Any]] | None
    if isinstance(instances, list) and len(inputs) == 1:
        rows = (
            [dict(r) for r in instances] if all(isinstance(r, Mapping) for r in instances) else None
        )
    elif any(isinstance(v, list) for v in inputs.values()):
        rows = _columns_to_rows(inputs)
    else:
        rows = [dict(inputs)]
        return [{**base, **rows[0], PREDICTION: prediction_value(data["outputs"])}]
    if not rows:
        return []
    if not isinstance(prediction, list) or len(prediction) != len(rows):
        return []  # a batch answer whose predictions cannot be matched to its rows
    return [{**base, **row, PREDICTION: p} for row, p in zip(rows, prediction, strict=True)]
