"""Label and push sources live as datasets in the state dir: seeded from the repository's files
(which stay untouched), appended to by feedback, read by training with one label per prediction."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from loopstack.core.modelspec import ModelSpec
from loopstack.features import store as feature_store
from loopstack.features.errors import EmptyWindow, FeatureRepoInvalid
from loopstack.features.offline import SEED, append_rows, dataset_files
from loopstack.features.training import training_frame

from .conftest import DATA_DIR, PROJECT_DIR, Features, make_settings


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_label_and_push_sources_read_state_dir_datasets_seeded_from_the_repo(
    features: Features,
) -> None:
    folder = features.settings.state_path / "feast" / "offline"
    store = features.store
    for name, file in (
        ("bike_demand_labels", "bike_demand_labels.parquet"),
        ("credit_default_labels", "credit_default_labels.parquet"),
        ("city_demand_lags_file", "bike_demand_lags.parquet"),
    ):
        source = store.get_data_source(name)
        assert source.path == str(folder / name / "*.parquet")
        seed = pd.read_parquet(folder / name / SEED)
        original = pd.read_parquet(DATA_DIR / file)
        assert len(seed) == len(original)
        pd.testing.assert_frame_equal(seed[list(original.columns)], original)
    labels = pd.read_parquet(folder / "bike_demand_labels" / SEED)
    assert set(labels["label_origin"]) == {"file"} and labels["prediction_id"].isna().all()
    lags = store.get_data_source("city_demand_lags_file")
    assert lags.created_timestamp_column == "written_at"


def test_appended_rows_never_touch_the_repository(
    tmp_path_factory: pytest.TempPathFactory, bike_spec: ModelSpec
) -> None:
    before = {p.name: _digest(p) for p in DATA_DIR.glob("*.parquet")}
    settings = make_settings(tmp_path_factory.mktemp("append") / ".loopstack")
    store = feature_store.apply(settings)
    hour = pd.Timestamp("2011-02-10 05:00", tz="UTC")
    row = {"city_id": "dc", "event_timestamp": hour, "bikers": 7.0, "season": 1}
    row |= {
        "prediction_id": "p-1",
        "label_origin": "feedback",
        "written_at": pd.Timestamp.now("UTC"),
    }
    path = append_rows(store, "bike_demand_labels", pd.DataFrame([row]), "t-1")
    assert path.parent == settings.state_path / "feast" / "offline" / "bike_demand_labels"
    assert {p.name: _digest(p) for p in DATA_DIR.glob("*.parquet")} == before

    # The fed-back label of an hour replaces the file's label of the same hour.
    start, end = datetime(2011, 2, 10, tzinfo=UTC), datetime(2011, 2, 11, tzinfo=UTC)
    frame = training_frame(settings, bike_spec, start, end, store=store, with_origin=True)
    at = frame[frame["event_timestamp"] == hour]
    assert at[["bikers", "label_origin", "prediction_id"]].values.tolist() == [
        [7, "feedback", "p-1"]
    ]
    assert (frame["label_origin"] == "file").sum() == len(frame) - 1
    # A request field the outcome's prediction did not carry is missing, not invented.
    assert pd.isna(at["temp"].iloc[0]) and at["season"].iloc[0] == 1
    assert frame["event_timestamp"].is_monotonic_increasing


def test_a_model_without_a_label_file_learns_from_fed_back_rows_alone(
    tmp_path: Path, credit_spec: ModelSpec
) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT_DIR / "feature_repo", project / "feature_repo")
    (project / "feature_repo" / "data" / "credit_default_labels.parquet").unlink()
    settings = make_settings(tmp_path / "state").model_copy(update={"project_dir": project})
    store = feature_store.apply(settings)
    source = store.get_data_source("credit_default_labels")
    assert dataset_files(source.path) == []  # no seed: nothing to copy
    start, end = datetime(2011, 1, 1, tzinfo=UTC), datetime(2012, 1, 1, tzinfo=UTC)
    with pytest.raises(EmptyWindow, match="credit_default_labels"):
        training_frame(settings, credit_spec, start, end, store=store)

    customers = pd.read_parquet(DATA_DIR / "credit_customers.parquet").head(3)
    now = pd.Timestamp.now("UTC")
    fed = pd.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "event_timestamp": customers["event_timestamp"] + pd.Timedelta("1h"),
            "default": [0, 1, 0],
            "prediction_id": ["a", "b", "a"],  # "a" was labelled twice: the human wins
            "label_origin": ["feedback", "feedback", "human"],
            "written_at": [now, now, now - pd.Timedelta("1h")],
        }
    )
    fed.loc[2, "event_timestamp"] = fed.loc[0, "event_timestamp"]
    fed.loc[2, "customer_id"] = fed.loc[0, "customer_id"]
    append_rows(store, "credit_default_labels", fed.iloc[:2], "1")
    append_rows(store, "credit_default_labels", fed.iloc[2:], "2")
    frame = training_frame(settings, credit_spec, start, end, store=store, with_origin=True)
    by_id = frame.set_index("prediction_id")
    assert sorted(by_id.index) == ["a", "b"]
    assert by_id.loc["a", "label_origin"] == "human" and by_id.loc["a", "default"] == 0
    assert by_id.loc["b", "default"] == 1
    assert by_id["balance"].notna().all()  # features joined as of each row's time


def test_rows_for_a_source_that_is_not_a_dataset_are_refused(features: Features) -> None:
    with pytest.raises(FeatureRepoInvalid, match="apply"):
        append_rows(features.store, "credit_customers_file", pd.DataFrame({"x": [1]}), "x")


def test_many_parts_are_merged_and_every_row_stays_once(
    tmp_path: Path, bike_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopstack.features import offline

    monkeypatch.setattr(offline, "MAX_PARTS", 3)
    settings = make_settings(tmp_path / "state")
    store = feature_store.apply(settings)
    hours = pd.date_range("2011-02-01", periods=8, freq="h", tz="UTC")
    for i, hour in enumerate(hours):
        row = {"city_id": "dc", "event_timestamp": hour, "bikers": 1000 + i}
        row |= {"prediction_id": f"p{i}", "label_origin": "feedback", "written_at": hour}
        append_rows(store, "bike_demand_labels", pd.DataFrame([row]), f"{i:03d}")
    parts = [p for p in dataset_files(store.get_data_source("bike_demand_labels").path)]
    assert len([p for p in parts if p.name != SEED]) <= 3
    start, end = hours[0].to_pydatetime(), (hours[-1] + pd.Timedelta("1h")).to_pydatetime()
    frame = training_frame(settings, bike_spec, start, end, store=store, with_origin=True)
    assert frame["bikers"].tolist() == [1000 + i for i in range(8)]
    assert set(frame["label_origin"]) == {"feedback"}
