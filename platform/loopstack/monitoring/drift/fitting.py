"""The `fit-detectors` step of the `train` pipeline: detectors from the drift reference sample.

It runs in the main environment and asks the detector server (`drift.detector_url`, else the
embedded one that `loopstack up` starts) to fit feature-drift (TabularDrift: KS per numeric
feature, chi-squared per categorical one, the spec's correction), prediction-drift (KS) and
outlier (isolation forest) detectors on `reference/reference.parquet`, with the thresholds and
window size of the model's drift spec. A classifier of three or more classes has no score to
KS-test: its predicted class is watched as one more categorical feature, `prediction`
(chi-squared and Cramér's V like the other categories; the outlier detector sees it too). The returned bundle is the step's output
`bundle.tar.gz`; `register` logs it as the version's artifact `detectors/bundle.tar.gz`.

It lives in the monitoring layer (the detector client's layer) and is registered by
`pipelines/train.py`, which is outside the package's layers.
"""

from __future__ import annotations

import pandas as pd

from loopstack.core.errors import InvalidInput
from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift.bounds import Bounds, bound_reference
from loopstack.monitoring.drift.bundles import read_bundle_info
from loopstack.monitoring.drift.consumer import detector_url
from loopstack.monitoring.drift.rows import PREDICTION
from loopstack.monitoring.errors import DetectorServerUnavailable
from loopstack.pipelines.context import StepContext

__all__ = ["BUNDLE_FILE", "categorical_columns", "drift_features", "fit_detectors"]

BUNDLE_FILE = "bundle.tar.gz"
"""The step's output file: the detectors' bundle."""


def categorical_columns(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """Features tested with chi-squared: object, string, category or boolean columns."""
    return [
        name
        for name in features
        if pd.api.types.is_object_dtype(frame[name])
        or isinstance(frame[name].dtype, pd.CategoricalDtype | pd.StringDtype)
        or pd.api.types.is_bool_dtype(frame[name])
    ]


def drift_features(spec: ModelSpec, reference: pd.DataFrame) -> list[str]:
    """The spec's `drift.features`, or every reference column but the prediction.

    The reference never holds sensitive fields (`training.reference_sample` leaves them out).

    Raises:
        InvalidInput: the spec names a sensitive field, or a column the reference lacks.
    """
    columns = [c for c in reference.columns if c != PREDICTION]
    if spec.drift.features is None:
        return columns
    sensitive = [f for f in spec.drift.features if f in spec.sensitive_fields]
    if sensitive:
        raise InvalidInput(
            f"drift.features of model {spec.name!r} names sensitive fields {sensitive}: they are "
            "logged masked, so drift cannot be watched on them; remove them from drift.features"
        )
    missing = [f for f in spec.drift.features if f not in columns]
    if missing:
        raise InvalidInput(
            f"drift.features of model {spec.name!r} names {missing}, which are not model "
            f"inputs (the reference sample has {columns})"
        )
    return list(spec.drift.features)


def fit_detectors(ctx: StepContext) -> None:
    """Fit the model's drift and outlier detectors on its reference sample; save the bundle.

    Raises:
        DetectorServerUnavailable: no detector server answers (start it: `loopstack up`).
        DetectorRequestInvalid: the server refused the reference (e.g. missing values).
    """
    spec = load_model_spec(ctx.settings.models_dir, ctx.params["model"])
    reference = pd.read_parquet(ctx.input("reference", "reference.parquet"))
    features = drift_features(spec, reference)
    categorical = categorical_columns(reference, features)
    prediction: str | None = PREDICTION
    # A binary classifier's reference holds P(second class) (float); three or more classes hold
    # the class itself, integers included.
    if spec.task == "classification" and not pd.api.types.is_float_dtype(reference[PREDICTION]):
        features, categorical, prediction = (
            [*features, PREDICTION],
            [*categorical, PREDICTION],
            None,
        )
    url = detector_url(ctx.settings)
    key = f"{spec.name}-run-{ctx.run_id}"[:128]
    drift = spec.drift
    # Windows drop rows missing a feature (reporter.window_frame); the reference does too. Its
    # long and rare categories are bounded the way windows' are (bounds.py).
    sample = bound_reference(
        reference[list(dict.fromkeys([*features, PREDICTION]))].dropna(),
        categorical,
        Bounds.from_settings(ctx.settings.drift),
    )
    with DetectorClient(url) as client:
        if not client.healthy():
            raise DetectorServerUnavailable(url, "no answer to GET /healthz")
        bundle = client.fit(
            key,
            sample,
            categorical,
            prediction=prediction,
            features=features,
            p_value=drift.p_value,
            correction=drift.correction,
            outlier_quantile=drift.outlier_quantile,
            min_size=drift.min_window_size,
        )
    ctx.output(BUNDLE_FILE).write_bytes(bundle)
    info = read_bundle_info(bundle)
    ctx.write_json(
        "detectors.json",
        {
            "features": list(info.features),
            "categorical": sorted(info.categorical),
            "n_reference": info.n_reference,
            "detector_url": url,
        },
    )
