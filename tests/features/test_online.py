"""Online features after apply + materialize agree with the offline point-in-time join."""

from __future__ import annotations

import pandas as pd
import pytest
from feast.data_source import PushMode
from loopstack.core.errors import InvalidInput, NotFound
from loopstack.core.modelspec import ModelSpec
from loopstack.features import store as feature_store
from loopstack.features.errors import EntityNotFound
from loopstack.features.online import online_features
from loopstack.features.registry import feature_service
from loopstack.features.training import historical_features

from .conftest import ONLINE_AS_OF, Features, make_settings

BIKE_FEATURES = ["bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d"]
CREDIT_FEATURES = ["student", "balance", "income"]


def _plain(value: object) -> object:
    """pandas scalars as Python values (NA → None) for comparison with the online store."""
    return None if pd.isna(value) else getattr(value, "item", lambda: value)()


def test_bike_online_equals_historical_as_of_materialization(
    features: Features, bike_spec: ModelSpec
) -> None:
    got = online_features(features.store, bike_spec, [{"city_id": "dc"}])
    service = feature_service(features.store, bike_spec.feature_service)
    offline = historical_features(
        features.store,
        service,
        pd.DataFrame({"city_id": ["dc"], "event_timestamp": [ONLINE_AS_OF]}),
    )
    assert got.values[0] == {n: _plain(offline.loc[0, n]) for n in BIKE_FEATURES}
    # The online row is the lag row timestamped at the end of the materialized window.
    assert set(got.event_timestamps[0].values()) == {ONLINE_AS_OF}


def test_credit_online_equals_historical_for_customers_known_then(
    features: Features, credit_spec: ModelSpec, customers: pd.DataFrame
) -> None:
    known = customers[customers["event_timestamp"] <= ONLINE_AS_OF].sample(40, random_state=1)
    rows = [{"customer_id": int(c)} for c in known["customer_id"]]
    got = online_features(features.store, credit_spec, rows)

    service = feature_service(features.store, credit_spec.feature_service)
    asked = pd.DataFrame({"customer_id": known["customer_id"], "event_timestamp": ONLINE_AS_OF})
    offline = historical_features(features.store, service, asked)
    for i, (_, row) in enumerate(offline.iterrows()):
        assert got.values[i] == {n: _plain(row[n]) for n in CREDIT_FEATURES}
        assert set(got.event_timestamps[i].values()) == {known["event_timestamp"].iloc[i]}


def test_customer_unknown_at_materialization_time_is_not_found(
    features: Features, credit_spec: ModelSpec, customers: pd.DataFrame
) -> None:
    # Online "not found" matches offline "nothing known yet" for a customer seen after then.
    later = int(customers.loc[customers["event_timestamp"] > ONLINE_AS_OF, "customer_id"].iloc[0])
    with pytest.raises(EntityNotFound, match=f"customer {{'customer_id': {later}}}"):
        online_features(features.store, credit_spec, [{"customer_id": later}])
    service = feature_service(features.store, credit_spec.feature_service)
    asked = pd.DataFrame({"customer_id": [later], "event_timestamp": [ONLINE_AS_OF]})
    assert historical_features(features.store, service, asked)[CREDIT_FEATURES].isna().all().all()


def test_unknown_entity_raises_not_found_naming_it(
    features: Features, bike_spec: ModelSpec
) -> None:
    with pytest.raises(EntityNotFound, match="nyc") as info:
        online_features(features.store, bike_spec, [{"city_id": "dc"}, {"city_id": "nyc"}])
    assert isinstance(info.value, NotFound) and info.value.http_status == 404
    assert info.value.keys == [{"city_id": "nyc"}] and info.value.entity == "city"
    assert "'dc'" not in str(info.value)


def test_entity_rows_need_the_join_key(features: Features, bike_spec: ModelSpec) -> None:
    with pytest.raises(InvalidInput, match="city_id"):
        online_features(features.store, bike_spec, [{"city": "dc"}])


def test_push_source_updates_the_online_store(
    tmp_path_factory: pytest.TempPathFactory, bike_spec: ModelSpec
) -> None:
    # Own state dir: the push must not change what the other tests read.
    settings = make_settings(tmp_path_factory.mktemp("push") / ".loopstack")
    store = feature_store.apply(settings)
    fresh = pd.DataFrame(
        {
            "city_id": ["dc"],
            "event_timestamp": [pd.Timestamp("2012-01-01 01:00", tz="UTC")],
            "bikers_last_hour": pd.array([42], dtype="Int64"),
            "bikers_same_hour_yesterday": pd.array([None], dtype="Int64"),
            "bikers_mean_7d": [120.5],
            # The push source's created timestamp: a later push of the same hour wins offline.
            "written_at": [pd.Timestamp("2012-01-01 01:05", tz="UTC")],
        }
    )
    store.push("city_demand_push", fresh, to=PushMode.ONLINE)
    got = online_features(store, bike_spec, [{"city_id": "dc"}])
    assert got.values[0] == {
        "bikers_last_hour": 42,
        "bikers_same_hour_yesterday": None,
        "bikers_mean_7d": 120.5,
    }
