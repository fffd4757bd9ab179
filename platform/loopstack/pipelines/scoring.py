"""Steps of the `batch-score` pipeline: a point-in-time feature window scored by any version."""

from __future__ import annotations

import mlflow
import pandas as pd

from loopstack.core.modelspec import load_model_spec
from loopstack.pipelines.context import StepContext
from loopstack.pipelines.modelcode import model_inputs
from loopstack.pipelines.training import TIMESTAMP, parse_window, predict_output

__all__ = ["build_scoring_window", "score_window"]


def build_scoring_window(ctx: StepContext) -> None:
    """The window's entity rows with the features known at each row's time."""
    from loopstack.features.training import training_frame

    spec = load_model_spec(ctx.settings.models_dir, ctx.params["model"])
    start, end = parse_window(ctx.params)
    frame = training_frame(ctx.settings, spec, start, end)
    frame.drop(columns=[spec.target]).to_parquet(ctx.output("window.parquet"), index=False)
    mlflow.log_metric("rows", len(frame))


def score_window(ctx: StepContext) -> None:
    """Score the window with the requested version (number or alias); write predictions.parquet."""
    from loopstack.registry.registry import ModelRegistry

    spec = load_model_spec(ctx.settings.models_dir, ctx.params["model"])
    registry = ModelRegistry(ctx.settings.mlflow_tracking_uri, publisher=_NoDecisions())
    version = registry.version(spec.name, ctx.params["version"]).version
    model = mlflow.sklearn.load_model(f"models:/{spec.name}/{version}")
    frame = pd.read_parquet(ctx.input("window", "window.parquet"))
    inputs = model_inputs(spec, list(frame.columns), TIMESTAMP)
    for column in inputs:  # the same widening as at training time
        if pd.api.types.is_integer_dtype(frame[column]) or pd.api.types.is_bool_dtype(
            frame[column]
        ):
            frame[column] = frame[column].astype("float64")
    out = frame[[spec.entity.join_key, TIMESTAMP]].copy()
    out["model"], out["version"] = spec.name, version
    out["prediction"] = predict_output(spec.task, model, frame[inputs])
    path = ctx.output("predictions.parquet")
    out.to_parquet(path, index=False)
    mlflow.log_artifact(str(path), artifact_path="batch-score")
    mlflow.log_metric("rows", len(out))
    if pd.api.types.is_numeric_dtype(out["prediction"]):  # a multiclass model answers classes
        mlflow.log_metric("mean_prediction", float(out["prediction"].mean()))
    mlflow.set_tag("loopstack.scored_version", version)


class _NoDecisions:
    """Scoring reads the registry only; it never moves an alias, so it has nothing to publish."""

    def publish(self, topic: str, events: object) -> None:
        raise AssertionError("batch scoring must not publish decisions")
