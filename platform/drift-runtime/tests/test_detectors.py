"""The detector service without a transport: fit, score, save, load."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopstack_drift.detectors import DetectorSet
from loopstack_drift.errors import DetectorNotFound, InvalidRequest
from loopstack_drift.service import DetectorService
from tables import fit_body, make_table


def test_same_distribution_is_not_drifted(service: DetectorService) -> None:
    service.fit("m", fit_body())
    report = service.score("m", {"window": make_table(500, seed=2)})
    assert report["status"] == "ok"
    assert report["drifted"] is False
    assert [f["feature"] for f in report["features"]] == ["temp", "hum", "colour"]
    assert [f["test"] for f in report["features"]] == ["ks", "ks", "chi2"]
    assert report["threshold"] == pytest.approx(0.05 / 3)  # Bonferroni over 3 features
    assert report["prediction"]["drifted"] is False
    outliers = report["outliers"]
    assert len(outliers["flags"]) == 500
    assert outliers["fraction_over_threshold"] < 0.05


def test_shifted_feature_and_prediction_are_drifted(service: DetectorService) -> None:
    service.fit("m", fit_body())
    report = service.score("m", {"window": make_table(500, seed=2, shift=1.0)})
    assert report["drifted"] is True
    drifted = {f["feature"] for f in report["features"] if f["drifted"]}
    assert drifted == {"temp"}
    assert report["prediction"]["drifted"] is True


def test_new_category_is_drift_on_that_feature(service: DetectorService) -> None:
    service.fit("m", fit_body())
    window = make_table(500, seed=2, colours=("red", "blue", "green"))
    report = service.score("m", {"window": window})
    assert {f["feature"] for f in report["features"] if f["drifted"]} == {"colour"}


def test_fdr_correction(service: DetectorService) -> None:
    service.fit("m", fit_body(correction="fdr"))
    calm = service.score("m", {"window": make_table(500, seed=2)})
    assert calm["correction"] == "fdr" and calm["drifted"] is False
    shifted = service.score("m", {"window": make_table(500, seed=2, shift=1.0)})
    assert shifted["drifted"] is True
    assert [f["feature"] for f in shifted["features"] if f["drifted"]] == ["temp"]


def test_small_window_is_not_enough_data(service: DetectorService) -> None:
    service.fit("m", fit_body(min_size=100))
    report = service.score("m", {"window": make_table(99, seed=2)})
    assert report["status"] == "not_enough_data"
    assert report["drifted"] is False and report["features"] == []


def test_empty_window_is_not_enough_data(service: DetectorService) -> None:
    service.fit("m", fit_body())
    empty = {"columns": {"temp": [], "hum": [], "colour": [], "pred": []}}
    assert service.score("m", {"window": empty})["status"] == "not_enough_data"


def test_prediction_column_is_optional_in_a_window(service: DetectorService) -> None:
    service.fit("m", fit_body())
    window = make_table(200, seed=2)
    del window["columns"]["pred"]
    report = service.score("m", {"window": window})
    assert report["status"] == "ok" and report["prediction"] is None


def test_bundle_round_trip_scores_identically(service: DetectorService, tmp_path: Path) -> None:
    summary, bundle = service.fit("m", fit_body())
    window = {"window": make_table(300, seed=3, shift=0.3)}
    before = service.score("m", window)

    other = DetectorService(tmp_path / "other-store")
    loaded = other.load("restored", bundle)
    after = other.score("restored", window)

    assert loaded["outlier_threshold"] == summary["outlier_threshold"]
    for key in ("drifted", "threshold", "features", "prediction", "outliers"):
        assert after[key] == before[key], key


def test_restarted_service_serves_its_store(service: DetectorService) -> None:
    service.fit("m", fit_body())
    window = {"window": make_table(300, seed=3)}
    before = service.score("m", window)
    restarted = DetectorService(service.store)
    assert restarted.score("m", window)["features"] == before["features"]


def test_saved_layout_uses_alibi_detect_format(service: DetectorService) -> None:
    service.fit("m", fit_body())
    directory = service.store / "m"
    assert (directory / "feature_drift" / "config.toml").is_file()
    assert (directory / "prediction_drift" / "config.toml").is_file()
    assert DetectorSet.load(directory).schema.prediction == "pred"


def test_unknown_key(service: DetectorService) -> None:
    with pytest.raises(DetectorNotFound):
        service.score("nope", {"window": make_table(50, seed=2)})


def test_bad_bundle_leaves_nothing_behind(service: DetectorService) -> None:
    with pytest.raises(InvalidRequest):
        service.load("m", b"not a bundle")
    assert [p.name for p in service.store.iterdir()] == []


def test_all_numeric_detectors_round_trip(service: DetectorService, tmp_path: Path) -> None:
    body = fit_body(categorical=[], prediction=None)
    del body["reference"]["columns"]["colour"], body["reference"]["columns"]["pred"]
    _, data = service.fit("m", body)
    window = make_table(200, seed=4, shift=1.0)
    del window["columns"]["colour"], window["columns"]["pred"]
    restored = DetectorService(tmp_path / "other")
    restored.load("m", data)
    one, two = service.score("m", {"window": window}), restored.score("m", {"window": window})
    assert one["features"] == two["features"] and one["drifted"] is True
