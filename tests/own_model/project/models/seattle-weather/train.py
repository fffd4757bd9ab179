"""Estimator of the seattle-weather model: a ridge regression on the day's readings.

`build_estimator` returns an UNFITTED sklearn Pipeline; the first step selects its inputs by
name, so the other columns of the training frame are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["FEATURES", "build_estimator"]

FEATURES = ["month", "precipitation", "temp_min", "wind", "latitude"]


def build_estimator(params: Mapping[str, Any] | None = None, /, **overrides: Any) -> Pipeline:
    """Unfitted Pipeline from hyper-parameters (Ridge's, e.g. `alpha`)."""
    chosen = {"alpha": 1.0, **(params or {}), **overrides}
    columns = ColumnTransformer(
        [("numeric", StandardScaler(), FEATURES)],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return Pipeline([("columns", columns), ("model", Ridge(**chosen))])
