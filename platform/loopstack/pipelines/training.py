"""Steps of the `train` pipeline: training set → validate → sweep → evaluate → reference → register."""

from __future__ import annotations

import hashlib
import json
import pickle
from datetime import datetime
from typing import Any, Literal

import mlflow
import numpy as np
import pandas as pd

from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.pipelines.classes import (
    SpecOrderedClassifier,
    label_value,
    model_classes,
    probabilities_in_order,
)
from loopstack.pipelines.context import StepContext
from loopstack.pipelines.errors import (
    DataValidationFailed,
    InvalidPipelineParams,
    PipelineDefinitionError,
)
from loopstack.pipelines.metrics import better, task_metrics
from loopstack.pipelines.modelcode import build_estimator, model_inputs

__all__ = [
    "TIMESTAMP",
    "build_training_set",
    "validate_training_set",
    "train_branch",
    "evaluate",
    "reference_sample",
    "split_holdout",
    "predict_output",
    "parse_window",
    "training_classes",
]

TIMESTAMP = "event_timestamp"
MAX_NULL_FRACTION = 0.5


def _spec(ctx: StepContext) -> ModelSpec:
    return load_model_spec(ctx.settings.models_dir, ctx.params["model"])


def parse_window(params: dict[str, str]) -> tuple[datetime, datetime]:
    """The run's [start, end) window from its ISO date parameters."""
    try:
        return datetime.fromisoformat(params["start"]), datetime.fromisoformat(params["end"])
    except ValueError as exc:
        raise InvalidPipelineParams(
            f"start/end must be ISO dates (e.g. 2011-01-01): {exc}"
        ) from exc


def _label_choice(ctx: StepContext, spec: ModelSpec) -> Literal["all", "feedback"]:
    choice = ctx.params.get("labels", "auto")
    if choice == "auto":  # a run the pipeline's resolve did not see (e.g. an Argo template)
        return spec.training.labels
    if choice == "all":
        return "all"
    if choice == "feedback":
        return "feedback"
    raise InvalidPipelineParams(f"labels must be 'auto', 'all' or 'feedback', got {choice!r}")


def build_training_set(ctx: StepContext) -> None:
    """Point-in-time-correct training rows of the window, with a data fingerprint, the count of
    labels by origin (repository file, fed-back outcome, human review) and, in `labels.parquet`,
    each row's key, time, target, origin and prediction id (lineage, not a model input)."""
    from loopstack.features.offline import LABEL_ORIGIN, PREDICTION_ID
    from loopstack.features.training import label_counts, training_frame

    spec = _spec(ctx)
    start, end = parse_window(ctx.params)
    choice = _label_choice(ctx, spec)
    frame = training_frame(ctx.settings, spec, start, end, labels=choice, with_origin=True)
    labels = label_counts(frame)
    lineage = [spec.entity.join_key, TIMESTAMP, spec.target, LABEL_ORIGIN, PREDICTION_ID]
    frame[lineage].to_parquet(ctx.output("labels.parquet"), index=False)
    frame = frame.drop(columns=[LABEL_ORIGIN, PREDICTION_ID])
    if ctx.params.get("sabotage") == "shuffle-labels":
        # The documented demo/test switch: a challenger trained on noise, to prove rollback.
        frame[spec.target] = np.random.default_rng(0).permutation(frame[spec.target].to_numpy())
    inputs = model_inputs(spec, list(frame.columns), TIMESTAMP)
    # Integer inputs become floats: a missing value online must not break the model's schema.
    for column in inputs:
        if pd.api.types.is_integer_dtype(frame[column]) or pd.api.types.is_bool_dtype(
            frame[column]
        ):
            frame[column] = frame[column].astype("float64")
    path = ctx.output("training_set.parquet")
    frame.to_parquet(path, index=False)
    ctx.write_json(
        "meta.json",
        {
            "rows": len(frame),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "inputs": inputs,
            "fingerprint": hashlib.sha256(
                pd.util.hash_pandas_object(frame, index=False).values.tobytes()
            ).hexdigest(),
            "sabotage": ctx.params.get("sabotage", "none"),
            "labels": {"choice": choice, **labels},
        },
    )
    mlflow.log_metric("rows", len(frame))
    mlflow.log_metrics({f"labels_{origin}": n for origin, n in labels.items()})


def _load_set(ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
    meta = ctx.read_json("training-set", "meta.json")
    return pd.read_parquet(ctx.input("training-set", "training_set.parquet")), meta


def validate_training_set(ctx: StepContext) -> None:
    """Reject training data with missing labels, non-numeric inputs, mostly-null or infinite columns."""
    spec = _spec(ctx)
    frame, meta = _load_set(ctx)
    problems: list[str] = []
    if len(frame) < 50:
        problems.append(f"only {len(frame)} rows (need at least 50)")
    if frame[spec.target].isna().any():
        problems.append(
            f"{int(frame[spec.target].isna().sum())} rows lack the target {spec.target!r}"
        )
    if spec.task == "classification":
        problems.extend(_class_problems(spec, frame[spec.target].dropna()))
    if spec.task == "regression" and (frame[spec.target] < 0).any() and spec.gate.metric == "rmse":
        problems.append(f"target {spec.target!r} has negative values")
    for column in meta["inputs"]:
        series = frame[column]
        nulls = float(series.isna().mean())
        if nulls > MAX_NULL_FRACTION:
            problems.append(f"column {column!r} is {nulls:.0%} null")
        if pd.api.types.is_numeric_dtype(series) and np.isinf(series.astype(float)).any():
            problems.append(f"column {column!r} has infinite values")
    report = {"rows": len(frame), "problems": problems, "passed": not problems}
    ctx.write_json("validation.json", report)
    if problems:
        raise DataValidationFailed(
            f"training data of {spec.name!r} failed validation: " + "; ".join(problems)
        )


def _class_problems(spec: ModelSpec, target: pd.Series) -> list[str]:
    found = sorted({label_value(v) for v in target.unique()}, key=str)
    if spec.classes is not None:
        allowed = {str(label_value(c)) for c in spec.classes}
        outside = [v for v in found if str(v) not in allowed]
        if outside:
            return [
                f"target {spec.target!r} has labels {outside} outside the spec's classes "
                f"{list(spec.classes)}; add them to `classes` in model.yaml or fix the labels"
            ]
        return []
    if len(found) < 2:
        return [
            f"target {spec.target!r} has a single class {found} in this window: a classifier "
            "needs at least two; widen the window or list `classes` in model.yaml"
        ]
    return []


def training_classes(spec: ModelSpec, target: pd.Series) -> list[Any]:
    """A classifier's classes: the spec's, in its order, else the training labels (sorted, as
    scikit-learn orders them)."""
    if spec.classes is not None:
        return [label_value(c) for c in spec.classes]
    return [label_value(c) for c in np.unique(target.dropna().to_numpy())]


def split_holdout(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by event time: the latest `fraction` of rows is the holdout."""
    ordered = frame.sort_values(TIMESTAMP, kind="stable")
    cut = int(len(ordered) * (1 - fraction))
    return ordered.iloc[:cut], ordered.iloc[cut:]


def predict_output(task: str, model: Any, inputs: pd.DataFrame) -> np.ndarray:
    """A model's output as one column: the prediction (regression), P(second class) (binary:
    the drift reference watches it as a number) or the most likely class (three or more: a
    category)."""
    if task == "classification":
        proba = np.asarray(model.predict_proba(inputs), dtype=float)
        if proba.shape[1] == 2:
            return proba[:, 1]
        classes = model_classes(model)
        # A plain int or str array (not object): MLflow infers the signature's output from it.
        return np.asarray([classes[i] for i in proba.argmax(axis=1)])
    return np.asarray(model.predict(inputs), dtype=float)


def _holdout_metrics(
    spec: ModelSpec, model: Any, holdout: pd.DataFrame, inputs: list[str], classes: list[Any]
) -> dict[str, float]:
    """The task's metrics of a model on the holdout; a classifier's probabilities are taken in
    the order of `classes`, whatever order the model keeps them in."""
    if spec.task == "classification":
        output = probabilities_in_order(model, holdout[inputs], classes)
        return task_metrics(spec.task, holdout[spec.target], output, classes)
    return task_metrics(
        spec.task, holdout[spec.target], predict_output(spec.task, model, holdout[inputs])
    )


def train_branch(ctx: StepContext) -> None:
    """Fit one entry of the sweep on the training part, score it on the holdout."""
    spec = _spec(ctx)
    index = int(ctx.branch or 0)
    grid = spec.training.param_grid
    if not 0 <= index < len(grid):
        raise InvalidPipelineParams(
            f"branch {index} is outside the param grid of {spec.name!r} ({len(grid)} entries)"
        )
    frame, meta = _load_set(ctx)
    train, holdout = split_holdout(frame, spec.training.holdout_fraction)
    model = build_estimator(spec, dict(grid[index]))
    model.fit(train[meta["inputs"]], train[spec.target])
    classes: list[Any] = []
    if spec.task == "classification":
        if not hasattr(model, "predict_proba"):
            raise PipelineDefinitionError(
                f"model {spec.name!r}: {spec.training.entrypoint} builds a classifier without "
                "predict_proba; return one that answers class probabilities (e.g. "
                "SVC(probability=True))"
            )
        classes = training_classes(spec, frame[spec.target])
        if model_classes(model) != classes:
            model = SpecOrderedClassifier(model, classes)
    scores = _holdout_metrics(spec, model, holdout, meta["inputs"], classes)
    ctx.output("model.pkl").write_bytes(pickle.dumps(model))
    ctx.write_json("metrics.json", {"params": grid[index], "metrics": scores})
    mlflow.log_params({k: str(v) for k, v in grid[index].items()})
    mlflow.log_metrics({k: v for k, v in scores.items() if np.isfinite(v)})


def _champion_metrics(
    ctx: StepContext, spec: ModelSpec, holdout: pd.DataFrame, inputs: list[str], classes: list[Any]
) -> dict[str, Any] | None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(ctx.settings.mlflow_tracking_uri)
    try:
        version = client.get_model_version_by_alias(spec.name, "champion")
    except MlflowException:
        return None
    champion = mlflow.sklearn.load_model(f"models:/{spec.name}/{version.version}")
    return {
        "version": str(version.version),
        "metrics": _holdout_metrics(spec, champion, holdout, inputs, classes),
    }


def evaluate(ctx: StepContext) -> None:
    """Pick the sweep's best branch; compare it with the champion on the same holdout (the gate)."""
    spec = _spec(ctx)
    gate = spec.gate
    results = {b: ctx.read_json("train", "metrics.json", b) for b in ctx.branches("train")}
    sign = -1 if gate.higher_is_better else 1
    best = min(
        results, key=lambda b: sign * _finite(results[b]["metrics"].get(gate.metric, np.nan), sign)
    )
    frame, meta = _load_set(ctx)
    _, holdout = split_holdout(frame, spec.training.holdout_fraction)
    if gate.metric not in results[best]["metrics"]:
        raise PipelineDefinitionError(
            f"model {spec.name!r}: gate metric {gate.metric!r} is not one of this task's "
            f"metrics {sorted(results[best]['metrics'])}; fix `gate.metric` in model.yaml"
        )
    candidate = results[best]["metrics"][gate.metric]
    classes = training_classes(spec, frame[spec.target]) if spec.task == "classification" else None
    champion = _champion_metrics(ctx, spec, holdout, meta["inputs"], classes or [])
    if champion is None:
        passed, reason = True, "no champion yet: the first version passes the gate"
    else:
        reference = champion["metrics"][gate.metric]
        passed = better(candidate, reference, gate.higher_is_better, gate.margin)
        direction = "higher" if gate.higher_is_better else "lower"
        reason = (
            f"{gate.metric} {candidate:.4g} vs champion v{champion['version']} {reference:.4g} "
            f"({direction} is better, margin {gate.margin:.0%}): {'passed' if passed else 'failed'}"
        )
    ctx.write_json(
        "evaluation.json",
        {"best_branch": best, "params": results[best]["params"], "metrics": results[best]["metrics"],
         "champion": champion, "gate": {"metric": gate.metric, "margin": gate.margin, "passed": passed, "reason": reason},
         "holdout_rows": len(holdout), "classes": classes},
    )  # fmt: skip
    mlflow.log_metric(f"candidate_{gate.metric}", candidate)
    mlflow.set_tag("loopstack.gate", "passed" if passed else "failed")


def _finite(value: float, sign: int) -> float:
    return value if np.isfinite(value) else sign * float("inf")


def reference_sample(ctx: StepContext) -> None:
    """A sample of training inputs and the chosen model's outputs: the drift reference."""
    spec = _spec(ctx)
    evaluation = ctx.read_json("evaluate", "evaluation.json")
    frame, meta = _load_set(ctx)
    train, _ = split_holdout(frame, spec.training.holdout_fraction)
    model = pickle.loads(ctx.input("train", "model.pkl", evaluation["best_branch"]).read_bytes())
    n = min(spec.training.reference_sample_size, len(train))
    sample = train.sample(n=n, random_state=0).sort_values(TIMESTAMP)
    # Sensitive fields never leave training unmasked, and served traffic logs them masked:
    # drift is not watched on them, so the reference (stored, sent to the detector) omits them.
    kept = [c for c in meta["inputs"] if c not in spec.sensitive_fields]
    reference = sample[kept].copy()
    reference["prediction"] = predict_output(spec.task, model, sample[meta["inputs"]])
    reference.to_parquet(ctx.output("reference.parquet"), index=False)
    ctx.write_json("reference.json", {"rows": n, "columns": list(reference.columns)})


def json_default(value: Any) -> Any:
    """JSON encoder fallback for numpy scalars."""
    return value.item() if hasattr(value, "item") else str(value)


def dumps(value: Any) -> str:
    """Compact JSON with numpy support."""
    return json.dumps(value, default=json_default, sort_keys=True)
