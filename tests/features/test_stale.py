"""TTLs at request time: a feature older than its view's TTL, or without a row, is stale or
missing, and the model spec's `stale_features` decides (the real SQLite online store).

The session store holds the lag row of ONLINE_AS_OF for `dc` (view TTL 2 h) and the credit
snapshots known then (TTL 0: no expiry).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pandas as pd
import pytest
from loopstack.core.modelspec import ModelSpec
from loopstack.features.errors import EntityNotFound, StaleFeatures
from loopstack.features.online import online_features
from loopstack.serving.features import OnlineFeatureSource

from .conftest import ONLINE_AS_OF, Features

LAGS = ["bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d"]


def _policy(spec: ModelSpec, policy: str) -> ModelSpec:
    return spec.model_copy(update={"stale_features": policy})


@pytest.mark.parametrize("policy", ["reject", "missing"])
def test_a_row_within_the_ttl_is_served(
    features: Features, bike_spec: ModelSpec, policy: str
) -> None:
    at = ONLINE_AS_OF + timedelta(hours=2)  # exactly the TTL: still fresh
    got = online_features(features.store, _policy(bike_spec, policy), [{"city_id": "dc"}], at)
    assert got.missing == [[]]
    assert got.values == online_features(features.store, bike_spec, [{"city_id": "dc"}]).values


def test_reject_names_the_stale_features_entity_and_ttl(
    features: Features, bike_spec: ModelSpec
) -> None:
    at = ONLINE_AS_OF + timedelta(hours=2, seconds=1)
    spec = _policy(bike_spec, "reject")
    with pytest.raises(StaleFeatures) as info:
        online_features(features.store, spec, [{"city_id": "dc"}], at)
    message = str(info.value)
    assert info.value.http_status == 422
    assert "city {'city_id': 'dc'}" in message and ", ".join(LAGS) in message
    assert "city_demand_lags" in message and "TTL 2:00:00" in message
    assert "last written 2011-02-20T12:00:00Z" in message
    assert "stale_features: missing" in message  # the fix


def test_missing_passes_stale_features_as_none_and_names_them(
    features: Features, bike_spec: ModelSpec
) -> None:
    at = ONLINE_AS_OF + timedelta(days=700)  # the two-year-old row
    spec = _policy(bike_spec, "missing")
    got = online_features(features.store, spec, [{"city_id": "dc"}, {"city_id": "nyc"}], at)
    assert got.values == [dict.fromkeys(LAGS), dict.fromkeys(LAGS)]
    assert got.missing == [LAGS, LAGS]
    # The event still says which row was found (and how old it was).
    assert got.event_timestamps[0] == dict.fromkeys(LAGS, ONLINE_AS_OF)


def test_an_unknown_entity_is_still_not_found_under_reject(
    features: Features, bike_spec: ModelSpec
) -> None:
    with pytest.raises(EntityNotFound, match="nyc"):
        online_features(
            features.store, _policy(bike_spec, "reject"), [{"city_id": "nyc"}], ONLINE_AS_OF
        )


def test_a_zero_ttl_never_expires(
    features: Features, credit_spec: ModelSpec, customers: pd.DataFrame
) -> None:
    known = int(customers.loc[customers["event_timestamp"] <= ONLINE_AS_OF, "customer_id"].iloc[0])
    far = ONLINE_AS_OF + timedelta(days=365 * 30)
    got = online_features(features.store, credit_spec, [{"customer_id": known}], far)
    assert got.missing == [[]] and got.values[0]["balance"] is not None


def test_serving_fetch_judges_at_the_request_time(features: Features, bike_spec: ModelSpec) -> None:
    source = OnlineFeatureSource(features.settings)
    lookup = source.lookup("bike-demand")
    assert lookup is not None and lookup.spec.stale_features == "missing"  # the bundled spec
    fresh = source.fetch(lookup, ["dc"], (ONLINE_AS_OF + timedelta(hours=1)).timestamp())
    assert fresh.missing_features() is None and fresh.values[0]["bikers_mean_7d"] is not None
    stale = source.fetch(lookup, ["dc"], (ONLINE_AS_OF + timedelta(hours=3)).timestamp())
    assert stale.missing_features() == [LAGS]
    assert all(v is None or math.isnan(v) for v in stale.values[0].values())
    strict = replace(lookup, spec=_policy(bike_spec, "reject"))
    with pytest.raises(StaleFeatures, match="bikers_last_hour"):
        source.fetch(strict, ["dc"], (ONLINE_AS_OF + timedelta(hours=3)).timestamp())
