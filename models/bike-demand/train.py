"""Estimator of the bike-demand model: gradient-boosted trees on context and demand lags.

`build_estimator` returns an UNFITTED sklearn Pipeline; the training pipeline fits it on the
frame `loopstack.features.training.training_frame` returns (extra columns are ignored: the
first step selects the inputs by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

__all__ = ["CATEGORICAL", "FEATURES", "NUMERIC", "build_estimator"]

CATEGORICAL = ["weathersit"]
NUMERIC = [
    "season",
    "mnth",
    "day",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "temp",
    "atemp",
    "hum",
    "windspeed",
    "bikers_last_hour",
    "bikers_same_hour_yesterday",
    "bikers_mean_7d",
]
FEATURES = CATEGORICAL + NUMERIC
DEFAULTS: dict[str, Any] = {"learning_rate": 0.1, "max_leaf_nodes": 31, "max_iter": 300}


def build_estimator(params: Mapping[str, Any] | None = None, /, **overrides: Any) -> Pipeline:
    """Unfitted Pipeline from hyper-parameters (a mapping, keyword arguments, or both)."""
    chosen = {**DEFAULTS, **(params or {}), **overrides}
    columns = ColumnTransformer(
        [
            # Unknown weather categories at serving time map to NaN, which the trees handle.
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=float("nan"),
                    encoded_missing_value=float("nan"),
                ),
                CATEGORICAL,
            ),
            # Lags are missing where an hour is missing: HGB routes NaN natively, no imputing.
            ("numeric", "passthrough", NUMERIC),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
        # pandas output keeps nullable Int64 lags intact; the model reads pd.NA as NaN.
    ).set_output(transform="pandas")
    model = HistGradientBoostingRegressor(
        loss="poisson",  # counts: non-negative, variance grows with the mean
        categorical_features=[0],
        early_stopping=False,
        random_state=0,
        **chosen,
    )
    return Pipeline([("columns", columns), ("model", model)])
