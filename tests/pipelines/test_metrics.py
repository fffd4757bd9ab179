"""Holdout and live-quality metrics of every task, checked against scikit-learn, and the class
order a classifier answers in (no server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from loopstack.pipelines.classes import SpecOrderedClassifier, probabilities_in_order
from loopstack.pipelines.metrics import class_index, task_metrics
from sklearn import metrics as skm
from sklearn.datasets import load_iris, load_wine
from sklearn.linear_model import LogisticRegression


def _wine() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_wine(as_frame=True)
    names = np.array(["barolo", "grignolino", "barbera"])
    return data.data, names[data.target.to_numpy()]


def test_multiclass_metrics_match_scikit_learn_on_a_real_data_set() -> None:
    inputs, target = _wine()
    model = LogisticRegression(max_iter=5000).fit(inputs.iloc[::2], target[::2])
    holdout, truth = inputs.iloc[1::2], target[1::2]
    classes = ["barolo", "grignolino", "barbera"]  # not scikit-learn's sorted order
    proba = probabilities_in_order(model, holdout, classes)
    got = task_metrics("classification", truth, proba, classes)
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    assert set(got) == {"accuracy", "macro_f1", "log_loss"}
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(truth, predicted, average="macro"))
    assert got["log_loss"] == pytest.approx(
        skm.log_loss(truth, model.predict_proba(holdout), labels=model.classes_)
    )


def test_binary_metrics_keep_their_names_and_values() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.6 + rng.uniform(0, 0.4, 300), 0, 1)
    one_column = task_metrics("classification", y, p)
    two_columns = task_metrics("classification", y, np.c_[1 - p, p], [0, 1])
    assert one_column == pytest.approx(two_columns)
    assert one_column["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert one_column["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert one_column["macro_f1"] == pytest.approx(
        skm.f1_score(y, (p >= 0.5).astype(int), average="macro")
    )
    # Text classes: the second class is the positive one, as serving's probability columns say.
    named = task_metrics(
        "classification", np.where(y == 1, "yes", "no"), np.c_[1 - p, p], ["no", "yes"]
    )
    assert named == pytest.approx(one_column)


def test_an_outcome_outside_the_classes_is_named() -> None:
    assert class_index(["1", 2.0, 0], [0, 1, 2]).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match=r"'hail' is not one of the classes \['rain', 'sun'\]"):
        class_index(["rain", "hail"], ["rain", "sun"])


def test_spec_order_wraps_the_model_and_adds_missing_classes() -> None:
    data = load_iris(as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    target = names[data.target.to_numpy()]
    fitted = LogisticRegression(max_iter=2000).fit(data.data, target)
    ordered = SpecOrderedClassifier(fitted, ["virginica", "setosa", "versicolor", "unseen"])
    proba = ordered.predict_proba(data.data)
    assert list(ordered.classes_) == ["virginica", "setosa", "versicolor", "unseen"]
    assert proba.shape == (150, 4) and np.allclose(proba[:, 3], 0)
    assert np.allclose(proba[:, 0], fitted.predict_proba(data.data)[:, 2])
    assert (ordered.predict(data.data) == fitted.predict(data.data)).all()
    from sklearn.base import is_classifier

    assert is_classifier(ordered)  # serving answers its probabilities
