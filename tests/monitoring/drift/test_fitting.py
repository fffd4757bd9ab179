"""The `fit-detectors` step: detectors from the reference sample, with the spec's options."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from loopstack.core.errors import InvalidInput
from loopstack.core.modelspec import load_model_spec
from loopstack.monitoring.drift.bundles import read_bundle_info
from loopstack.monitoring.drift.fitting import categorical_columns, drift_features, fit_detectors
from loopstack.monitoring.errors import DetectorServerUnavailable
from loopstack.pipelines.context import StepContext

from tests.monitoring.drift.builders import INPUTS, Predictor, bike_hours, reference
from tests.monitoring.drift.conftest import make_settings


def context(tmp_path: Path, **drift: object) -> StepContext:
    """A step context of run `r1` with the reference step's output in place."""
    hours = bike_hours()
    winter = hours[hours["month"] <= 2]
    run_dir = tmp_path / "runs" / "r1"
    folder = run_dir / "steps" / "reference"
    folder.mkdir(parents=True)
    reference(winter, Predictor.fit(winter)).to_parquet(folder / "reference.parquet")
    settings = make_settings(tmp_path / "state", **drift)
    return StepContext(settings, "train", "fit-detectors", run_dir, {"model": "bike-demand"})


@pytest.mark.integration
def test_fit_detectors_saves_a_bundle_of_the_spec(tmp_path: Path, detector_url: str) -> None:
    ctx = context(tmp_path, detector_url=detector_url)
    fit_detectors(ctx)
    info = read_bundle_info(ctx.output("bundle.tar.gz").read_bytes())
    spec = load_model_spec(ctx.settings.models_dir, "bike-demand")
    expected = spec.drift.features or INPUTS
    assert list(info.features) == list(expected)
    assert info.categorical == {"weathersit"}  # object dtype in the data
    assert info.prediction == "prediction" and info.n_reference > 1000


def test_fit_detectors_without_a_server_names_loopstack_up(tmp_path: Path) -> None:
    from loopstack.core.processes import free_port

    ctx = context(tmp_path, detector_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DetectorServerUnavailable, match="loopstack up"):
        fit_detectors(ctx)


def test_categorical_columns_follow_the_dtypes() -> None:
    frame = bike_hours()[INPUTS]
    assert categorical_columns(frame, INPUTS) == ["weathersit"]


def test_drift_is_never_watched_on_sensitive_fields() -> None:
    # Served traffic logs sensitive fields masked, and the reference sample leaves them out.
    spec = load_model_spec(Path(__file__).resolve().parents[3] / "models", "credit-default")
    asked = spec.model_copy(
        update={"drift": spec.drift.model_copy(update={"features": ["income"]})}
    )
    frame = pd.DataFrame({"balance": [1.0], "student": ["No"], "prediction": [0.1]})
    with pytest.raises(InvalidInput, match=r"sensitive fields \['income'\].*remove them"):
        drift_features(asked, frame)
    assert drift_features(spec, frame) == ["balance", "student"]
