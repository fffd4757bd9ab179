"""The model spec: `models/<name>/model.yaml`, the one description of a model every layer reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loopstack.core.errors import InvalidInput, NotFound

__all__ = [
    "DriftSpec",
    "EntitySpec",
    "GateSpec",
    "ModelSpec",
    "QualitySpec",
    "ReviewSpec",
    "RolloutSpec",
    "SpecScan",
    "TrainingSpec",
    "TriggerSpec",
    "list_model_specs",
    "load_model_spec",
    "scan_model_specs",
]

SPEC_FILE = "model.yaml"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class EntitySpec(_Spec):
    """The entity a prediction is about."""

    name: str
    """Feast entity name."""
    join_key: str
    """Column (and request field) that identifies the entity."""


class GateSpec(_Spec):
    """The evaluation gate a new version must pass against the champion on the same holdout."""

    metric: str
    """Metric compared (e.g. `rmse`, `auc`)."""
    higher_is_better: bool = False
    """Direction of the metric."""
    margin: float = 0.0
    """Relative margin: the candidate may be at most this much worse (0.02 = 2%)."""


class TrainingSpec(_Spec):
    """How the model is trained."""

    entrypoint: str
    """`module:function` under `models/<name>/` that builds an unfitted estimator from params."""
    param_grid: list[dict[str, Any]] = Field(default_factory=lambda: [dict[str, Any]()])
    """Hyper-parameter sweep: one training branch per entry, run in parallel."""
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    """Latest fraction of the window (by event time) held out for evaluation."""
    reference_sample_size: int = Field(2000, gt=0)
    """Rows of training features and predictions kept as the drift reference."""
    labels: Literal["all", "feedback"] = "all"
    """Label rows a train run reads unless it says otherwise: `all` (the label file and the
    outcomes fed back for predictions) or `feedback` (only those outcomes)."""


class QualitySpec(_Spec):
    """Live quality measurement."""

    window_size: int = Field(200, gt=0)
    """Joined outcomes per rolling window."""
    degradation_margin: float = Field(0.2, ge=0)
    """Relative worsening against the training baseline that counts as degraded."""
    consecutive_windows: int = Field(2, gt=0)
    """Degraded windows in a row before a `quality.v1` degraded alert."""
    join_window_s: float = Field(7 * 24 * 3600, gt=0)
    """How long an outcome waits for its prediction (and vice versa) before it is an orphan."""


class DriftSpec(_Spec):
    """Drift and outlier detection on logged traffic."""

    p_value: float = Field(0.05, gt=0, lt=1)
    """Significance level of the feature-drift test (after correction)."""
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    """Multiple-testing correction across features."""
    window_size: int = Field(500, gt=0)
    """Predictions per drift window."""
    window_seconds: float = Field(3600.0, gt=0)
    """A window also closes this long after its first prediction (event time, or wall clock when
    no new prediction comes); with fewer than `min_window_size` rows it reports not enough data."""
    min_window_size: int = Field(50, gt=0)
    """Smaller windows are reported as not enough data."""
    outlier_quantile: float = Field(0.99, gt=0, lt=1)
    """Outlier threshold: this quantile of the reference scores."""
    features: list[str] | None = None
    """Input columns watched for drift; None: every model input. Leave out calendar columns
    (day, month, hour): a window of contiguous traffic differs from the reference on them by
    construction."""
    min_statistic: float = Field(0.65, ge=0, le=1)
    """Effect-size guard of numeric features (and the prediction): a feature is drifted only
    if its p-value is below the corrected threshold AND its KS distance is at least this.
    Hourly weather is autocorrelated, so a contiguous window is never an i.i.d. sample and the
    p-value alone flags almost every week. Calibrated on the 2011 bike data: against a Jan-Feb
    reference, held-out contiguous Jan-Feb weeks reach KS 0.58 at most (temp), summer weeks
    (June-August) 0.97-1.0; 0.65 flags the summer and none of those weeks (0 disables)."""
    min_cramers_v: float = Field(0.3, ge=0, le=1)
    """The same guard for categorical (chi-squared) features, on Cramér's V of the
    reference-vs-window table (0.3: a "medium" association). On the bike data `weathersit`
    reaches V 0.15 in held-out Jan-Feb weeks and 0.20 at most in any week of 2011."""


class TriggerSpec(_Spec):
    """When to retrain."""

    on_drift: bool = True
    """Retrain when a drift window is flagged."""
    on_quality: bool = True
    """Retrain when live quality degrades."""
    schedule: str | None = None
    """Cron expression for scheduled retraining (also the Argo CronWorkflow's schedule)."""
    cooldown_s: float = Field(6 * 3600, ge=0)
    """Minimum time between two retrainings of this model."""
    training_window_days: int = Field(60, gt=0)
    """How much recent data a retraining uses."""


class RolloutSpec(_Spec):
    """How a challenger goes out: shadow, then canary steps, decided on paired errors."""

    shadow_min_samples: int = Field(200, gt=0)
    """Labelled paired requests needed before leaving shadow."""
    canary_steps: list[int] = Field(default_factory=lambda: [10, 50, 100])
    """Canary traffic percentages, in order."""
    step_min_samples: int = Field(100, gt=0)
    """Labelled canary requests needed at each step."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """False-promotion rate of the paired test."""
    power: float = Field(0.8, gt=0, lt=1)
    """Power the minimum sample size is planned for."""
    effect_size: float = Field(0.2, gt=0)
    """Standardised effect (Cohen's d on paired error differences) the test is planned for."""
    max_error_rate: float = Field(0.02, ge=0, le=1)
    """Challenger request error rate that rolls it back at once."""
    max_p99_latency_ratio: float = Field(2.0, gt=0)
    """Challenger p99 latency, as a multiple of the champion's, that rolls it back."""


class ReviewSpec(_Spec):
    """Which predictions wait for a human: the review queue (`GET /v1/reviews`)."""

    min_margin: float | None = Field(None, gt=0, lt=1)
    """Classifiers: a prediction whose two most likely classes are closer than this in
    probability is flagged `needs_review` in its answer; None: no confidence check."""
    outliers: bool = True
    """Rows the outlier detector scores over its threshold (on logged traffic, per drift
    window) join the review queue."""


class ModelSpec(_Spec):
    """One model Loopstack trains, serves and watches."""

    name: str
    """Model name (registered model name in MLflow)."""
    task: Literal["regression", "classification"]
    """Learning task."""
    target: str
    """Label column."""
    entity: EntitySpec
    feature_service: str | None = None
    """Feast FeatureService the model reads; None: the model reads request fields only (served
    without a feature lookup; no training data in the feature store, so it is trained outside
    and adopted with `loopstack models register`, and gated on labels only when there are)."""
    request_fields: list[str] = Field(default_factory=list)
    """Fields the caller sends with each request (not from the feature store)."""
    classes: list[int | str] | None = None
    """Classifiers: the labels an outcome may take (two for binary, more for multiclass), in the
    order class probabilities are answered; None: the labels of the training data."""
    nullable_fields: list[str] = Field(default_factory=list)
    """Numeric inputs that may be null or NaN (the model gets NaN); a null or NaN in any other
    numeric input is answered 400 naming the field."""
    stale_features: Literal["reject", "missing"] = "reject"
    """A feature the online store has no row for, or whose row is older than its view's TTL at
    request time: `reject` answers 4xx naming it; `missing` passes it to the model as NaN and
    names it in the answer."""
    segments: list[str] = Field(default_factory=list)
    """Columns live quality is broken down by."""
    sensitive_fields: list[str] = Field(default_factory=list)
    """Fields masked before anything is stored."""
    gate: GateSpec
    training: TrainingSpec
    quality: QualitySpec = Field(default_factory=QualitySpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    trigger: TriggerSpec = Field(default_factory=TriggerSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    review: ReviewSpec = Field(default_factory=ReviewSpec)
    directory: Path | None = Field(default=None, exclude=True)
    """Folder the spec was read from (set by the loader)."""

    @model_validator(mode="after")
    def _steps_end_at_100(self) -> ModelSpec:
        steps = self.rollout.canary_steps
        if not steps or steps != sorted(steps) or steps[-1] != 100 or steps[0] <= 0:
            raise ValueError("rollout.canary_steps must increase and end at 100")
        return self


def load_model_spec(models_dir: Path, name: str) -> ModelSpec:
    """Read and validate `models/<name>/model.yaml`."""
    path = models_dir / name / SPEC_FILE
    if not path.is_file():
        known = ", ".join(sorted(p.parent.name for p in models_dir.glob(f"*/{SPEC_FILE}")))
        raise NotFound(f"model {name!r} has no spec at {path}; known models: {known or 'none'}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise InvalidInput(f"{path} is not a valid model spec: expected a mapping of fields")
        spec = ModelSpec.model_validate({**raw, "directory": path.parent})
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {_yaml_problem(exc)}; fix the file") from exc
    except ValidationError as exc:
        raise InvalidInput(f"{path} is not a valid model spec: {_problems(exc)}") from exc
    if spec.name != name:
        raise InvalidInput(f"{path} names model {spec.name!r}; rename the folder or the model")
    return spec


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # PyYAML's str() quotes the line with a `^` marker under it: unreadable on one line.
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def _problems(exc: ValidationError) -> str:
    # One line per field, without pydantic's documentation URLs: the reason is shown in
    # `loopstack status` and `GET /v1/models`, where a multi-line dump is unreadable.
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}" for err in exc.errors()
    )


def list_model_specs(models_dir: Path) -> list[ModelSpec]:
    """Every model spec under `models/`, sorted by name."""
    return [
        load_model_spec(models_dir, p.parent.name)
        for p in sorted(models_dir.glob(f"*/{SPEC_FILE}"))
    ]


class SpecScan(NamedTuple):
    """Every model folder under `models/`: the valid specs and the broken ones with their reason."""

    specs: list[ModelSpec]
    """Valid specs, sorted by name."""
    broken: dict[str, str]
    """Folder name -> why its spec does not load (the message names the file and the fix)."""


def scan_model_specs(models_dir: Path) -> SpecScan:
    """Every model spec under `models/`, tolerating broken ones.

    Long-running processes list models with this, so one malformed `model.yaml` takes out only
    its own model: the others keep serving and deciding, and the broken one is reported.
    """
    specs: list[ModelSpec] = []
    broken: dict[str, str] = {}
    for path in sorted(models_dir.glob(f"*/{SPEC_FILE}")):
        name = path.parent.name
        try:
            specs.append(load_model_spec(models_dir, name))
        except (InvalidInput, OSError, UnicodeDecodeError) as exc:
            broken[name] = str(exc)
    return SpecScan(specs, broken)
