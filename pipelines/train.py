"""The `train` pipeline: one definition, run by the embedded runner and compiled for Argo.

training-set → validate → train (one branch per entry of the model's param grid, in parallel)
→ evaluate (best branch vs the champion on the same holdout: the gate) → reference (drift
reference sample) → fit-detectors (drift and outlier detectors on the detector server) →
register (lineage tags, the detectors' bundle; alias `challenger` if the gate passed).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.monitoring.drift import fitting
from loopstack.pipelines import registration, training
from loopstack.pipelines.dsl import Param, Pipeline
from loopstack.pipelines.errors import InvalidPipelineParams
from loopstack.pipelines.plan import check_window


def _resolve(settings: Settings, params: dict[str, str]) -> dict[str, str]:
    """Check the model and window up front; one sweep branch per entry of the model's param grid."""
    spec = load_model_spec(settings.models_dir, params["model"])
    if params["end"] == "auto":
        params = {**params, "end": datetime.now(UTC).date().isoformat()}
    if params["start"] == "auto":
        days = timedelta(days=spec.trigger.training_window_days)
        params = {**params, "start": (date.fromisoformat(params["end"][:10]) - days).isoformat()}
    check_window(params["start"], params["end"])
    if params["as_of"] != "now":
        try:
            datetime.fromisoformat(params["as_of"].replace("Z", "+00:00"))
        except ValueError:
            raise InvalidPipelineParams(
                f"as_of must be 'now' or an ISO time, got {params['as_of']!r}"
            ) from None
    if params["labels"] == "auto":
        params = {**params, "labels": spec.training.labels}
    if params["labels"] not in ("all", "feedback"):
        raise InvalidPipelineParams("labels must be 'auto', 'all' or 'feedback'")
    if params["sabotage"] not in ("none", "shuffle-labels"):
        raise InvalidPipelineParams("sabotage must be 'none' or 'shuffle-labels'")
    if params["branches"] == "auto":
        params = {**params, "branches": json.dumps(list(range(len(spec.training.param_grid))))}
    return params


pipeline = Pipeline(
    name="train",
    description="Train a model on a point-in-time-correct window, gate it against the champion, register it.",
    params=[
        Param("model", help="model name under models/"),
        Param(
            "start",
            default="auto",
            help="window start (ISO date); auto = end - training_window_days",
        ),
        Param("end", default="auto", help="window end, exclusive (ISO date); auto = today (UTC)"),
        Param(
            "branches", default="auto", help="JSON list of param-grid indices to sweep; auto = all"
        ),
        Param(
            "labels",
            default="auto",
            help="training labels: all (label file and fed-back outcomes), feedback (only "
            "outcomes fed back for predictions); auto = the spec's training.labels",
        ),
        Param(
            "sabotage", default="none", help="demo/test switch: 'shuffle-labels' trains on noise"
        ),
        Param(
            "as_of",
            default="now",
            help="model time of the run's decisions (a replay's clock); now = the wall clock",
        ),
    ],
    resolve=_resolve,
)

pipeline.step("training-set", cache=False)(training.build_training_set)
pipeline.step("validate", after=("training-set",))(training.validate_training_set)
pipeline.step("train", after=("validate",), sweep="branches")(training.train_branch)
pipeline.step("evaluate", after=("train",), cache=False)(training.evaluate)
pipeline.step("reference", after=("evaluate",))(training.reference_sample)
pipeline.step("fit-detectors", after=("reference",))(fitting.fit_detectors)
pipeline.step("register", after=("fit-detectors",), cache=False, retries=0)(registration.register)
