"""The HTTP edge: status codes and `{"error": reason}` bodies for every caller mistake."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient
from tables import fit_body, make_table


def _window(**changes: Any) -> dict[str, Any]:
    columns = make_table(100, seed=5)["columns"]
    columns.update(changes)
    return {"window": {"columns": {k: v for k, v in columns.items() if v is not None}}}


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_fit_returns_a_bundle_that_loads_under_another_key(client: TestClient) -> None:
    fitted = client.post("/v1/detectors/k1/fit", json=fit_body(p_value=0.01))
    assert fitted.status_code == 200
    body = fitted.json()
    assert body["features"] == ["temp", "hum", "colour"] and body["categorical"] == ["colour"]
    bundle = client.get("/v1/detectors/k1/bundle")
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/gzip"
    loaded = client.put("/v1/detectors/k2/bundle", content=bundle.content)
    assert loaded.status_code == 200 and loaded.json()["options"]["p_value"] == 0.01
    one = client.post("/v1/detectors/k1/score", json=_window()).json()
    two = client.post("/v1/detectors/k2/score", json=_window()).json()
    assert one["features"] == two["features"] and one["outliers"] == two["outliers"]
    assert client.get("/v1/detectors/k2").json()["n_reference"] == 1000


def test_score(client: TestClient) -> None:
    response = client.post("/v1/detectors/bikes/score", json=_window())
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"window": {"columns": {"temp": [NaN]}}}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (json.dumps({"columns": {}}).encode(), "unknown fields"),
        (json.dumps({}).encode(), "'window' is required"),
        (json.dumps(_window(temp=None)).encode(), "missing feature columns ['temp']"),
        (json.dumps(_window(extra=[1] * 100)).encode(), "unexpected columns ['extra']"),
        (json.dumps(_window(temp=["warm"] * 100)).encode(), "'temp' is numeric but row 0 is str"),
        (json.dumps(_window(hum=[None] * 100)).encode(), "'hum' is numeric but row 0 is null"),
        (json.dumps(_window(colour=[1.5] * 100)).encode(), "'colour' is categorical"),
        (json.dumps(_window(temp=[1.0])).encode(), "different lengths"),
    ],
)
def test_bad_score_bodies_are_400(client: TestClient, body: bytes, message: str) -> None:
    response = client.post("/v1/detectors/bikes/score", content=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"p_value": 1.5}, "'p_value' must be a number"),
        ({"p_value": "0.05"}, "'p_value' must be a number"),
        ({"correction": "holm"}, "'correction' must be"),
        ({"outlier_quantile": 1}, "'outlier_quantile'"),
        ({"min_size": 0}, "'min_size'"),
        ({"categorical": ["nope"]}, "not features"),
        ({"categorical": "colour"}, "list of column names"),
        ({"categorical": []}, "'colour' is numeric"),
        ({"prediction": "nope"}, "prediction column 'nope'"),
        ({"features": ["temp"]}, "neither features nor the prediction"),
        ({"features": ["temp", "pred", "hum", "colour"]}, "both a feature and the prediction"),
        ({"min_size": 5000}, "reference has 1000 rows"),
        ({"thresh": 1}, "unknown fields ['thresh']"),
        (
            {
                "reference": {"columns": {"t": [True, False]}},
                "min_size": 2,
                "categorical": [],
                "prediction": None,
            },
            "'t' is numeric but row 0 is bool",
        ),
    ],
)
def test_bad_fit_bodies_are_400(client: TestClient, changes: dict[str, Any], message: str) -> None:
    response = client.post("/v1/detectors/new/fit", json={**fit_body(), **changes})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert client.get("/v1/detectors/new").status_code == 404


def test_unknown_key_is_404(client: TestClient) -> None:
    for method, path in [
        ("POST", "/v1/detectors/nope/score"),
        ("GET", "/v1/detectors/nope/bundle"),
        ("GET", "/v1/detectors/nope"),
    ]:
        response = client.request(method, path, json=_window())
        assert response.status_code == 404, (method, path)
        assert "'nope' not found" in response.json()["error"]


def test_invalid_key_is_400(client: TestClient) -> None:
    response = client.post("/v1/detectors/..hidden/score", json=_window())
    assert response.status_code == 400 and "invalid detector key" in response.json()["error"]


def test_bad_bundle_is_400(client: TestClient) -> None:
    response = client.put("/v1/detectors/k3/bundle", content=b"garbage")
    assert response.status_code == 400 and "bundle" in response.json()["error"]


def test_unknown_route_and_method_are_json_errors(client: TestClient) -> None:
    assert client.get("/v2/anything").json()["error"].endswith("Not Found")
    response = client.delete("/v1/detectors/bikes/score")
    assert response.status_code == 405 and "error" in response.json()
