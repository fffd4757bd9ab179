"""Fixtures of the features tests: one applied and materialized Feast store per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureStore
from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.core.settings import Settings
from loopstack.features import store as feature_store

PROJECT_DIR = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_DIR / "feature_repo" / "data"
YEAR_START = datetime(2011, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2012, 1, 1, tzinfo=UTC)
ONLINE_AS_OF = datetime(2011, 2, 20, 12, tzinfo=UTC)
"""The online store holds what was known at this time (materialized up to it); the bike files
Feast reads end with February 2011 (the rest of the year is the demo's replay file)."""


@dataclass(frozen=True)
class Features:
    """Settings and the Feast store they open, applied and materialized up to ONLINE_AS_OF."""

    settings: Settings
    store: FeatureStore


def make_settings(state_dir: Path) -> Settings:
    """Settings of the real project with a private state dir."""
    return Settings(project_dir=PROJECT_DIR, state_dir=state_dir)


@pytest.fixture(scope="session")
def features(tmp_path_factory: pytest.TempPathFactory) -> Features:
    """`apply` then `materialize` [2011-01-01, ONLINE_AS_OF] once per session (Feast is slow)."""
    settings = make_settings(tmp_path_factory.mktemp("features") / ".loopstack")
    store = feature_store.apply(settings)
    feature_store.materialize(settings, YEAR_START, ONLINE_AS_OF, store=store)
    return Features(settings, store)


@pytest.fixture(scope="session", params=["duckdb", "file"])
def engines(request: pytest.FixtureRequest, features: Features) -> Features:
    """The session's store through each offline engine (DuckDB, Dask): same registry and files."""
    sections = {"offline_store": request.param}
    settings = features.settings.model_copy(
        update={"features": features.settings.features.model_copy(update=sections)}
    )
    return Features(settings, feature_store.open_store(settings))


@pytest.fixture(scope="session")
def bike_spec() -> ModelSpec:
    """The bike-demand model spec."""
    return load_model_spec(PROJECT_DIR / "models", "bike-demand")


@pytest.fixture(scope="session")
def credit_spec() -> ModelSpec:
    """The credit-default model spec."""
    return load_model_spec(PROJECT_DIR / "models", "credit-default")


@pytest.fixture(scope="session")
def bike_labels() -> pd.DataFrame:
    """Label rows of the bike-demand model, straight from the repository's parquet file."""
    return pd.read_parquet(DATA_DIR / "bike_demand_labels.parquet")


@pytest.fixture(scope="session")
def bike_lags() -> pd.DataFrame:
    """Lag rows of the bike-demand model, straight from the repository's parquet file."""
    return pd.read_parquet(DATA_DIR / "bike_demand_lags.parquet")


@pytest.fixture(scope="session")
def customers() -> pd.DataFrame:
    """Account snapshots of the credit-default model, straight from the parquet file."""
    return pd.read_parquet(DATA_DIR / "credit_customers.parquet")
