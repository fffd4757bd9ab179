"""Estimator of the seattle-sky model: gradient-boosted trees on the day's readings.

`build_estimator` returns an UNFITTED sklearn Pipeline; the first step selects its inputs by
name, so the other columns of the training frame are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

__all__ = ["FEATURES", "build_estimator"]

FEATURES = ["month", "precipitation", "temp_max", "temp_min", "wind"]


def build_estimator(params: Mapping[str, Any] | None = None, /, **overrides: Any) -> Pipeline:
    """Unfitted Pipeline from hyper-parameters (HistGradientBoostingClassifier's)."""
    chosen = {
        "max_iter": 100,
        "learning_rate": 0.05,
        "random_state": 0,
        **(params or {}),
        **overrides,
    }
    columns = ColumnTransformer(
        [("readings", "passthrough", FEATURES)], remainder="drop", verbose_feature_names_out=False
    )
    return Pipeline([("columns", columns), ("model", HistGradientBoostingClassifier(**chosen))])
