"""Estimator of the credit-default model: logistic regression or gradient-boosted trees.

`build_estimator` returns an UNFITTED sklearn Pipeline with `predict_proba`; extra columns
of the training frame are ignored (the first step selects the inputs by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

__all__ = ["CATEGORICAL", "FEATURES", "NUMERIC", "build_estimator"]

CATEGORICAL = ["student"]
NUMERIC = ["balance", "income"]
FEATURES = CATEGORICAL + NUMERIC


def build_estimator(params: Mapping[str, Any] | None = None, /, **overrides: Any) -> Pipeline:
    """Unfitted Pipeline from hyper-parameters; `model` is `logistic` (default) or `hgb`."""
    chosen = {**(params or {}), **overrides}
    kind = chosen.pop("model", "logistic")
    columns = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(drop="if_binary", handle_unknown="ignore"), CATEGORICAL),
            ("numeric", StandardScaler(), NUMERIC),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    if kind == "logistic":
        model: Any = LogisticRegression(max_iter=1000, **chosen)
    elif kind == "hgb":
        model = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **chosen)
    else:
        raise ValueError(f"unknown model {kind!r}: use 'logistic' or 'hgb'")
    return Pipeline([("columns", columns), ("model", model)])
