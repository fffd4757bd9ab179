"""Drift detectors through a real detector server, on the real 2011 Capital Bikeshare data.

Detectors fitted on January-February must flag July's weather and must not flag rows held out
of January-February. The server runs in the drift runtime's own environment (see conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.errors import DetectorNotFound, DetectorRequestInvalid

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[2]
# The whole year (the training label file ends with February).
BIKESHARE = PROJECT_DIR / "feature_repo" / "data" / "bike_demand_replay.parquet"
WEATHER = ["temp", "atemp", "hum", "windspeed", "weathersit"]
# The observed count stands in for the model's prediction: like a prediction, it moves with
# the season, which is all the prediction-drift test needs.
PREDICTION = "bikers"
KEY = "bike-demand-winter"


@pytest.fixture(scope="module")
def bikes() -> pd.DataFrame:
    """The hourly rows of 2011 with weather and counts."""
    return pd.read_parquet(BIKESHARE, columns=["mnth", *WEATHER, PREDICTION])


@pytest.fixture(scope="module")
def winter_split(bikes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """January-February split at random into a reference (80%) and a held-out slice (20%)."""
    winter = bikes[bikes["mnth"] <= 2].drop(columns="mnth")
    held_out = np.random.default_rng(2011).random(len(winter)) < 0.2
    return winter[~held_out], winter[held_out]


@pytest.fixture(scope="module")
def bundle(detector_url: str, winter_split: tuple[pd.DataFrame, pd.DataFrame]) -> bytes:
    """Detectors fitted on the winter reference, once for the module."""
    reference, _ = winter_split
    with DetectorClient(detector_url) as client:
        return client.fit(KEY, reference, categorical=["weathersit"], prediction=PREDICTION)


def month(bikes: pd.DataFrame, number: int) -> pd.DataFrame:
    """One month's rows, without the month column."""
    return bikes[bikes["mnth"] == number].drop(columns="mnth")


def test_server_is_healthy(client: DetectorClient) -> None:
    assert client.healthy()


def test_july_weather_drifts_from_winter(
    client: DetectorClient, bundle: bytes, bikes: pd.DataFrame
) -> None:
    report = client.score(KEY, month(bikes, 7))
    assert report.status == "ok" and report.n_rows == 744
    assert report.drifted
    assert {"temp", "atemp"} <= set(report.drifted_features)
    assert report.threshold == pytest.approx(0.05 / len(WEATHER))
    assert report.prediction is not None and report.prediction.drifted
    assert report.outliers is not None and len(report.outliers.flags) == 744
    # Summer rows sit outside the winter forest far more often than the 1% the threshold allows.
    assert report.outliers.fraction_over_threshold > 0.03


def test_held_out_winter_rows_do_not_drift(
    client: DetectorClient, bundle: bytes, winter_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, held_out = winter_split
    report = client.score(KEY, held_out)
    assert report.status == "ok" and report.n_rows == len(held_out) > 200
    assert not report.drifted and report.drifted_features == []
    assert report.prediction is not None and not report.prediction.drifted
    assert report.outliers is not None and report.outliers.fraction_over_threshold < 0.05


def test_bundle_restores_the_same_detectors(
    client: DetectorClient, bundle: bytes, bikes: pd.DataFrame
) -> None:
    client.load("bike-demand-restored", bundle)
    window = month(bikes, 4)
    original, restored = client.score(KEY, window), client.score("bike-demand-restored", window)
    assert restored.features == original.features
    assert restored.prediction == original.prediction
    assert restored.outliers == original.outliers
    assert client.bundle("bike-demand-restored")  # the server hands it back too


def test_small_window_is_not_enough_data(
    client: DetectorClient, bundle: bytes, bikes: pd.DataFrame
) -> None:
    report = client.score(KEY, month(bikes, 7).head(10))
    assert report.status == "not_enough_data" and not report.drifted and report.features == ()


def test_unknown_key(client: DetectorClient, bikes: pd.DataFrame) -> None:
    with pytest.raises(DetectorNotFound, match="'no-such-model'"):
        client.score("no-such-model", month(bikes, 7))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w.drop(columns="hum"), "missing feature columns ['hum']"),
        (lambda w: w.assign(extra=1.0), "unexpected columns ['extra']"),
        (
            lambda w: w.assign(temp=w["temp"].astype(str)),
            "column 'temp' is numeric but row 0 is str",
        ),
        (lambda w: w.assign(hum=np.nan), "column 'hum' is numeric but row 0 is null"),
        (lambda w: w.assign(weathersit=0.5), "column 'weathersit' is categorical"),
    ],
)
def test_bad_windows_are_refused(
    client: DetectorClient,
    bundle: bytes,
    bikes: pd.DataFrame,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    message: str,
) -> None:
    with pytest.raises(DetectorRequestInvalid, match=re.escape(message)):
        client.score(KEY, change(month(bikes, 7)))


def test_bad_fit_is_refused(client: DetectorClient, bikes: pd.DataFrame) -> None:
    with pytest.raises(DetectorRequestInvalid, match="categorical columns \\['season'\\]"):
        client.fit("bike-bad", month(bikes, 1), categorical=["season"])
    with pytest.raises(DetectorRequestInvalid, match="'weathersit' is numeric"):
        client.fit("bike-bad", month(bikes, 1))


def test_malformed_json_is_400(detector_url: str, bundle: bytes) -> None:
    response = httpx.post(f"{detector_url}/v1/detectors/{KEY}/score", content=b'{"window": ')
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON")
