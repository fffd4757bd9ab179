"""A served model whose online features are older than their view's TTL at request time.

The test server's online store holds the bike lag row of 2011-02-20 (TTL 2 h), and requests are
answered now: the bundled bike-demand spec says `stale_features: missing`, so the lags reach the
model as missing and the answer and the event name them (the reject policy is covered against
the same SQLite store in tests/features/test_stale.py).
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import BIKE, BIKE_FEATURES, Served, bike_row

pytestmark = pytest.mark.integration


def test_stale_lags_are_passed_as_missing_and_named_in_v1_v2_and_the_event(
    served: Served,
) -> None:
    body = {"instances": [{**bike_row(), "city_id": "dc"}, {**bike_row(9), "city_id": "dc"}]}
    answer = httpx.post(f"{served.rest}/v1/models/{BIKE}:predict", json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert [sorted(m) for m in got["missing_features"]] == [sorted(BIKE_FEATURES)] * 2
    assert all(isinstance(p, float) for p in got["predictions"])
    event = served.events({got["prediction_ids"][0]})[got["prediction_ids"][0]]["data"]
    assert sorted(event["features"]["missing"]) == sorted(BIKE_FEATURES)
    assert all(event["features"]["values"][f] is None for f in BIKE_FEATURES)
    # When the row was written stays in the event: why it was judged stale.
    stamps = event["features"]["timestamps"]
    assert set(stamps) == set(BIKE_FEATURES) and all(t.startswith("2011-") for t in stamps.values())

    inputs = [
        {
            "name": k,
            "datatype": "BYTES" if isinstance(v, str) else "FP64",
            "shape": [1],
            "data": [v],
        }
        for k, v in bike_row().items()
    ]
    v2 = httpx.post(
        f"{served.rest}/v2/models/{BIKE}/infer",
        json={"inputs": inputs, "parameters": {"city_id": "dc"}},
    )
    assert v2.status_code == 200, v2.text
    assert sorted(v2.json()["parameters"]["missing_features"].split(",")) == sorted(BIKE_FEATURES)

    # Features sent with the request are never judged: the answer names nothing.
    full = {**bike_row(), **dict.fromkeys(BIKE_FEATURES, 100.0)}
    sent = httpx.post(f"{served.rest}/v1/models/{BIKE}:predict", json={"instances": [full]})
    assert sent.status_code == 200 and "missing_features" not in sent.json()
