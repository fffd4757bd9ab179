"""The demo does not read the future: the files Feast trains from end with February 2011, the
replay file holds the year, and the oracle's hindsight rows are the training set's features."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.core.settings import Settings
from loopstack.demo.replay import FEATURE_FEEDS, feature_feed, labelled_history
from loopstack.demo.summary import hindsight_frame
from loopstack.features.training import training_frame

from tests.conftest import PROJECT_DIR

DATA = PROJECT_DIR / "feature_repo" / "data"
HISTORY_END = pd.Timestamp("2011-03-01", tz="UTC")
LAGS = ["bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d"]


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_model_spec(PROJECT_DIR / "models", "bike-demand")


def _prepare() -> ModuleType:
    path = DATA / "prepare.py"
    loaded = importlib.util.spec_from_file_location("bike_prepare", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_the_files_feast_trains_from_hold_nothing_after_february() -> None:
    labels = pd.read_parquet(DATA / "bike_demand_labels.parquet")
    lags = pd.read_parquet(DATA / "bike_demand_lags.parquet")
    assert labels["event_timestamp"].max() < HISTORY_END
    assert labels["label_timestamp"].max() <= HISTORY_END  # the last count is known at 00:00
    assert lags["event_timestamp"].max() < HISTORY_END
    assert (
        labels["event_timestamp"].min()
        == lags["event_timestamp"].min()
        == pd.Timestamp("2011-01-01", tz="UTC")
    )


def test_the_replay_file_holds_the_year_and_agrees_with_the_history() -> None:
    replay = pd.read_parquet(DATA / "bike_demand_replay.parquet")
    labels = pd.read_parquet(DATA / "bike_demand_labels.parquet")
    lags = pd.read_parquet(DATA / "bike_demand_lags.parquet")
    assert len(replay) == 8645 and replay["event_timestamp"].is_unique
    assert replay["event_timestamp"].dt.month.nunique() == 12
    assert replay["event_timestamp"].max() == pd.Timestamp("2011-12-31 23:00", tz="UTC")
    history = replay[replay["event_timestamp"] < HISTORY_END].reset_index(drop=True)
    pd.testing.assert_frame_equal(history[list(labels.columns)], labels)
    # Each hour carries the lag row of its own hour: what a point-in-time join picks.
    at_hour = lags.set_index("event_timestamp").loc[history["event_timestamp"], LAGS]
    pd.testing.assert_frame_equal(history[LAGS], at_hour.reset_index(drop=True))


def test_prepare_rebuilds_the_bike_files_from_the_replay_byte_for_byte(tmp_path: Path) -> None:
    names = ["bike_demand_labels.parquet", "bike_demand_lags.parquet", "bike_demand_replay.parquet"]
    (tmp_path / names[2]).write_bytes((DATA / names[2]).read_bytes())
    _prepare().main(["--from-replay", "--out", str(tmp_path)])
    for name in names:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_the_replay_sends_the_year_with_the_apps_own_lag_feed(spec: ModelSpec) -> None:
    repo = PROJECT_DIR / "feature_repo"
    rows = labelled_history(repo, spec)
    assert rows["event_timestamp"].is_monotonic_increasing
    assert rows["event_timestamp"].max() >= pd.Timestamp("2011-12-31", tz="UTC")
    feed = feature_feed(repo, spec)
    assert feed is not None and len(feed) == len(rows)
    july = rows[rows["event_timestamp"] == pd.Timestamp("2011-07-04 12:00", tz="UTC")].iloc[0]
    sent = feed[july["event_timestamp"]]
    assert list(sent) == list(FEATURE_FEEDS["bike-demand"])
    assert sent == {name: pytest.approx(float(july[name])) for name in LAGS}


def test_the_oracles_hindsight_rows_are_the_training_sets_features(
    tmp_path: Path, spec: ModelSpec
) -> None:
    """On the months both cover, the hindsight rows equal Feast's point-in-time training frame
    column for column (so the oracle and the loop's models read the same features)."""
    from loopstack.features import store as feature_store

    settings = Settings(project_dir=PROJECT_DIR, state_dir=tmp_path / ".loopstack")
    store = feature_store.apply(settings)
    start, end = datetime(2011, 2, 1, tzinfo=UTC), datetime(2011, 3, 1, tzinfo=UTC)
    trained = training_frame(settings, spec, start, end, store=store)
    hindsight = hindsight_frame(settings, spec, start, end).reset_index(drop=True)
    columns = list(hindsight.columns)
    assert columns[-1] == spec.target
    assert [c for c in trained.columns if c in columns] == columns
    pd.testing.assert_frame_equal(trained[columns], hindsight)
    later = hindsight_frame(settings, spec, end, datetime(2011, 4, 1, tzinfo=UTC))
    assert later["event_timestamp"].min() >= pd.Timestamp(end) and len(later) > 600


def test_the_summary_counts_every_decision_of_the_demos_stack() -> None:
    from loopstack.demo.summary import decision_counts

    def decision(kind: str, source: str = "loopstack/loop") -> dict[str, str]:
        return {"kind": kind, "source": source}

    decisions = [
        decision("promoted"),  # the first version
        decision("trigger_fired"),
        decision("pipeline_started"),
        decision("promoted", "loopstack/pipeline"),  # the pipeline's own alias move
        decision("rolled_back"),
        decision("pipeline_started"),
        decision("promoted"),
    ]
    assert decision_counts(decisions) == {"retrainings": 2, "promotions": 2, "rollbacks": 1}
