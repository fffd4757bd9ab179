"""Both model specs validate, match the feature repository, and their estimators fit."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from loopstack.core.modelspec import ModelSpec, list_model_specs
from loopstack.features.registry import feature_service, service_features
from loopstack.features.training import training_frame
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from .conftest import PROJECT_DIR, Features


def entrypoint(spec: ModelSpec) -> Callable[..., Pipeline]:
    """Import `module:function` from the model's folder under a private module name."""
    assert spec.directory is not None
    module_name, function = spec.training.entrypoint.split(":")
    path = spec.directory / f"{module_name}.py"
    loader = importlib.util.spec_from_file_location(f"_model_{spec.name}_{module_name}", path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    fn: Callable[..., Pipeline] = getattr(module, function)
    return fn


def test_both_specs_load_and_say_what_the_brief_says() -> None:
    specs = {s.name: s for s in list_model_specs(PROJECT_DIR / "models")}
    assert {"bike-demand", "credit-default"} <= set(specs)
    bike, credit = specs["bike-demand"], specs["credit-default"]
    assert (bike.task, bike.target, bike.entity.name, bike.entity.join_key) == (
        "regression",
        "bikers",
        "city",
        "city_id",
    )
    assert bike.segments == ["season", "weathersit"]
    assert (bike.gate.metric, bike.gate.higher_is_better, bike.gate.margin) == ("rmse", False, 0.02)
    assert (credit.task, credit.target, credit.entity.join_key) == (
        "classification",
        "default",
        "customer_id",
    )
    assert credit.segments == ["student"] and credit.sensitive_fields == ["income"]
    assert (credit.gate.metric, credit.gate.higher_is_better) == ("auc", True)
    for spec in (bike, credit):
        assert 2 <= len(spec.training.param_grid) <= 4


def test_specs_match_the_feature_repository(
    features: Features, bike_spec: ModelSpec, credit_spec: ModelSpec
) -> None:
    for spec in (bike_spec, credit_spec):
        served = service_features(feature_service(features.store, spec.feature_service))
        # Every segment and sensitive field is something the model actually receives.
        assert set(spec.segments + spec.sensitive_fields) <= set(served) | set(spec.request_fields)


SLICES = {
    "bike-demand": (datetime(2011, 2, 1, tzinfo=UTC), datetime(2011, 2, 22, tzinfo=UTC)),
    "credit-default": (datetime(2011, 1, 1, tzinfo=UTC), datetime(2011, 3, 1, tzinfo=UTC)),
}


@pytest.mark.parametrize("name", sorted(SLICES))
def test_every_param_grid_entry_builds_an_estimator_that_fits(
    features: Features, name: str, bike_spec: ModelSpec, credit_spec: ModelSpec
) -> None:
    spec = bike_spec if name == "bike-demand" else credit_spec
    frame = training_frame(features.settings, spec, *SLICES[name], store=features.store)
    x, y = frame.drop(columns=[spec.target]), frame[spec.target]
    build = entrypoint(spec)
    for params in spec.training.param_grid:
        # Few boosting rounds: this checks wiring, not quality. One OpenMP thread: on a busy
        # 2-core host HGB's default threads spin against each other (~10x slower).
        quick = {**params, **({"max_iter": 30} if "max_iter" in params else {})}
        model = build(quick)
        assert isinstance(model, Pipeline) and not hasattr(model, "n_features_in_")
        with threadpool_limits(1):
            model.fit(x, y)
        predictions = model.predict(x.iloc[:10])
        assert predictions.shape == (10,) and np.isfinite(predictions).all()
        if spec.task == "classification":
            proba: Any = model.predict_proba(x.iloc[:10])
            assert proba.shape == (10, 2)
    assert build(**spec.training.param_grid[0]).get_params()  # keyword form works too
