"""The demo's figures, recomputed from the decision events and the feedback read model.

Everything comes back through the management API (history, predictions, drift), except two
baselines computed here on the very rows the loop served: the static first model, and an oracle
retrained weekly (in-process) on the data before each week. Both read the inputs in hindsight:
the model's replay file (the whole year with the features of each hour) when it has one, else
the feature store; the loop itself learns after the first window only from the outcomes sent
back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from loopstack.client import LoopstackClient
from loopstack.core.modelspec import ModelSpec
from loopstack.core.settings import Settings
from loopstack.demo.replay import REPLAY_FILES, labelled_history

__all__ = [
    "DemoResults",
    "Oracle",
    "baselines",
    "collect",
    "hindsight_frame",
    "summary_rows",
    "weekly_oracle",
]

SERVED_ROUTES = ("champion", "canary")


@dataclass
class DemoResults:
    """What the report and the summary table are made of."""

    spec: ModelSpec
    history: dict[str, Any]
    predictions: pd.DataFrame
    drift: list[dict[str, Any]]
    static: np.ndarray | None = None
    oracle: np.ndarray | None = None

    @property
    def served(self) -> pd.DataFrame:
        """Answers the callers got, with a known outcome, in time order."""
        p = self.predictions
        return p[p["route"].isin(SERVED_ROUTES) & p["outcome"].notna() & (p["status"] == "ok")]


def collect(
    client: LoopstackClient, model: str
) -> tuple[dict[str, Any], pd.DataFrame, list[dict[str, Any]]]:
    """History, every prediction (all pages) and the drift windows of a model."""
    history = client.get(f"/v1/models/{model}/history", limit=100_000)
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/v1/predictions", model=model, limit=1000, cursor=cursor)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    rows = [{
        "prediction_id": i["prediction_id"], "version": i["version"], "route": i["route"],
        "request_time": pd.Timestamp(i["request_time"]), "status": i["status"], "score": i["score"],
        "outcome": (i["outcome"] or {}).get("value"), "inputs": i["inputs"],
    } for i in items]  # fmt: skip
    frame = pd.DataFrame(rows).sort_values("request_time", kind="stable").reset_index(drop=True)
    frame["outcome"] = pd.to_numeric(frame["outcome"], errors="coerce")
    drift = client.get(f"/v1/models/{model}/drift", last=1000)["windows"]
    return history, frame, drift


def _numeric_as_float(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer and boolean columns as floats, as the train pipeline feeds them to models."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_numeric_dtype(out[column]) or pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].astype("float64")
    return out


@dataclass
class Oracle:
    """Weekly models and the point-in-time rows they were fitted from (by event time)."""

    models: dict[datetime, Any]
    rows: pd.DataFrame


def hindsight_frame(
    settings: Settings, spec: ModelSpec, start: datetime, end: datetime
) -> pd.DataFrame:
    """Labelled rows of [start, end) with their features, as a training frame orders them.

    From the replay file when the model has one: it holds the rows the training files stop
    short of, each with the features known at its hour (what a point-in-time join would give).
    """
    if spec.name not in REPLAY_FILES:
        from loopstack.features.training import training_frame

        return training_frame(settings, spec, start, end)
    rows = labelled_history(settings.feature_repo_dir, spec)
    stamps = rows["event_timestamp"]
    rows = rows[(stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))]
    # The target last, as in `training_frame`: the fitted column order is the same.
    return rows[[c for c in rows.columns if c != spec.target] + [spec.target]]


def weekly_oracle(settings: Settings, spec: ModelSpec, start: datetime, end: datetime) -> Oracle:
    """One model per week of [start, end), each fitted on the training window before its week.

    Runs in a background process while the replay goes on (it needs no running service).
    """
    os.nice(19)  # the replay comes first
    from threadpoolctl import threadpool_limits

    from loopstack.pipelines.modelcode import build_estimator, model_inputs

    window = timedelta(days=spec.trigger.training_window_days)
    frame = hindsight_frame(settings, spec, start - window, end)
    stamps = frame["event_timestamp"]
    inputs = model_inputs(spec, list(frame.columns), "event_timestamp")
    models: dict[datetime, Any] = {}
    week = start
    while week < end:
        train = frame[(stamps < week) & (stamps >= week - window)]
        if len(train) > 50:
            model = build_estimator(spec, dict(spec.training.param_grid[0]))
            with threadpool_limits(1):  # OpenMP threads spin: they would take both cores
                model.fit(_numeric_as_float(train[inputs]), train[spec.target])
            models[week] = model
        week += timedelta(days=7)
    rows = frame[frame["event_timestamp"] >= start].drop_duplicates("event_timestamp")
    return Oracle(models, _numeric_as_float(rows.set_index("event_timestamp")[inputs]))


def baselines(
    settings: Settings, spec: ModelSpec, results: DemoResults, static_version: str, oracle: Oracle
) -> None:
    """Score the served rows with the static model and with the weekly-retrained oracle.

    Inputs are the oracle's hindsight rows at each request's time, not the logged inputs:
    those have sensitive fields masked.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow.sklearn

    from loopstack.pipelines.training import predict_output

    served = results.served
    if served.empty:
        return
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    static = mlflow.sklearn.load_model(f"models:/{spec.name}/{static_version}")
    times = served["request_time"].reset_index(drop=True)
    # Each model gets the columns in the order it was fitted with.
    inputs = oracle.rows.reindex(pd.DatetimeIndex(times)).reset_index(drop=True)
    known = inputs.notna().any(axis=1).to_numpy()
    results.static = np.full(len(served), np.nan)
    columns = list(static.feature_names_in_)
    results.static[known] = predict_output(spec.task, static, inputs.loc[known, columns])
    predicted = np.full(len(served), np.nan)
    for week, model in oracle.models.items():
        rows = ((times >= week) & (times < week + timedelta(days=7))).to_numpy() & known
        if rows.any():
            predicted[rows] = predict_output(spec.task, model, inputs[rows])
    results.oracle = predicted


def metric(spec: ModelSpec, outcome: np.ndarray, predicted: np.ndarray | None) -> float | None:
    """The model's gate metric (RMSE, AUC, ...) of predictions against outcomes."""
    from loopstack.pipelines.metrics import task_metrics

    if predicted is None:
        return None
    keep = np.isfinite(predicted)
    return float(task_metrics(spec.task, outcome[keep], predicted[keep])[spec.gate.metric])


def summary_rows(results: DemoResults) -> list[tuple[str, str]]:
    """The summary table: the loop against the static and the oracle model, and the loop's record."""
    spec, served = results.spec, results.served
    outcome = served["outcome"].to_numpy(dtype=float)
    name = (
        spec.gate.metric.upper() if spec.gate.metric in ("rmse", "mae", "auc") else spec.gate.metric
    )
    ops = results.history["metrics"]
    loop = metric(spec, outcome, served["score"].to_numpy(dtype=float))
    oracle = metric(spec, outcome, results.oracle)
    values = {
        f"loop {name} (served answers)": loop,
        f"static {name} (first model, never retrained)": metric(spec, outcome, results.static),
        f"oracle {name} (retrained every week, in hindsight)": oracle,
    }
    rows = [(k, "-" if v is None else f"{v:.4g}") for k, v in values.items()]
    if name in ("RMSE", "MAE") and loop is not None and oracle:  # errors: lower is better
        rows.append((f"loop {name} / oracle {name}", f"{loop / oracle:.3f}"))
    counts = decision_counts(results.history["decisions"])
    finished = counts["promotions"] + counts["rollbacks"]
    rows += [
        ("requests served (with outcome)", f"{len(results.predictions[results.predictions['route'].isin(SERVED_ROUTES)])} ({len(served)})"),
        ("retrainings", str(counts["retrainings"])),
        ("promotions", str(counts["promotions"])),
        ("rollbacks", str(counts["rollbacks"])),
        ("time to recover (mean)", _days(ops["time_to_recover_s"])),
        ("lead time trigger → promoted (mean)", _days(ops["lead_time_s"])),
        ("change-failure rate", f"{counts['rollbacks'] / finished:.0%}" if finished else "-"),
    ]  # fmt: skip
    return rows


def decision_counts(decisions: list[dict[str, Any]]) -> dict[str, int]:
    """Retrainings the loop started, promotions (the first version's included) and rollbacks.

    Counted on every decision of the demo's own stack (it starts empty), whatever window the
    history's model-ops metrics are computed on.
    """
    kinds = [d["kind"] for d in decisions if d.get("source") != "loopstack/pipeline"]
    return {
        "retrainings": sum(d["kind"] == "pipeline_started" for d in decisions),
        "promotions": kinds.count("promoted"),
        "rollbacks": sum(d["kind"] == "rolled_back" for d in decisions),
    }


def _days(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 86400:.1f} days"
