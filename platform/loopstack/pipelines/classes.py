"""The classes of a classifier: which labels it knows, in the order its probabilities come.

The spec's `classes` (when given) fix both the allowed labels and the order of the answered
probabilities; otherwise the training labels give them, in scikit-learn's sorted order. The
order is recorded with the version (lineage `classes`) so serving, feedback and the loop agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["SpecOrderedClassifier", "label_value", "model_classes", "probabilities_in_order"]


def label_value(value: Any) -> Any:
    """A label as a plain Python int or str (numpy scalars and integral floats become int)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def model_classes(model: Any) -> list[Any]:
    """The classes a fitted classifier answers probabilities for, in its column order."""
    return [label_value(c) for c in np.asarray(model.classes_, dtype=object).tolist()]


def probabilities_in_order(model: Any, inputs: pd.DataFrame, classes: Sequence[Any]) -> np.ndarray:
    """The model's class probabilities with one column per entry of `classes`, in that order
    (a class the model never saw gets probability 0): how a champion trained on other classes
    is still compared on the same holdout."""
    proba = np.asarray(model.predict_proba(inputs), dtype=float)
    known = {str(c): j for j, c in enumerate(model_classes(model))}
    out = np.zeros((len(inputs), len(classes)), dtype=float)
    for i, c in enumerate(classes):
        j = known.get(str(label_value(c)))
        if j is not None:
            out[:, i] = proba[:, j]
    return out


class SpecOrderedClassifier(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose probabilities come in the spec's class order.

    scikit-learn sorts `classes_`; a spec that lists its classes in another order (or lists a
    class the training window lacks) gets them answered in its own order, so the served
    probability columns are the ones the spec documents.
    """

    def __init__(self, estimator: Any = None, classes: Sequence[Any] = ()) -> None:
        self.estimator = estimator
        self.classes = classes

    @property
    def classes_(self) -> np.ndarray:
        """The spec's classes (what `predict_proba` columns mean)."""
        return np.asarray(list(self.classes), dtype=object)

    @property
    def feature_names_in_(self) -> np.ndarray:
        """The wrapped estimator's input columns."""
        return np.asarray(self.estimator.feature_names_in_, dtype=object)

    def fit(self, inputs: pd.DataFrame, target: Any) -> SpecOrderedClassifier:
        """Fit the wrapped estimator."""
        self.estimator.fit(inputs, target)
        return self

    def predict_proba(self, inputs: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one column per spec class."""
        return probabilities_in_order(self.estimator, inputs, list(self.classes))

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        """The most likely spec class of each row."""
        return self.classes_[self.predict_proba(inputs).argmax(axis=1)]
