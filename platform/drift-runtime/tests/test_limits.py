"""The server defends itself: long categories, many categories, big tables and bodies."""

from __future__ import annotations

import resource
import tracemalloc
from pathlib import Path

import orjson
import pytest
from loopstack_drift.app import create_app
from loopstack_drift.columns import Schema
from loopstack_drift.limits import OTHER, Limits, digest
from loopstack_drift.service import DetectorService
from starlette.testclient import TestClient
from tables import fit_body, make_table


def test_a_long_category_is_its_digest_and_costs_no_fixed_width_array() -> None:
    schema = Schema.infer({"c": ["a", "b"] * 50}, None, ["c"], None)
    long_value = "x" * 10_000_000
    window = {"c": ["a"] * 999 + [long_value]}
    tracemalloc.start()
    try:
        matrix, _ = schema.encode(window)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # np.asarray of these 1,000 strings would have asked for 40 GB (4 bytes x 10M x 1,000).
    assert peak < 50 * 1024 * 1024, peak
    assert matrix[-1, 0] == 2.0 and set(matrix[:-1, 0]) == {0.0}
    assert digest(long_value).startswith("sha256:") and len(digest(long_value)) == 23


def test_long_reference_categories_match_their_window_values() -> None:
    names = ["y" * 300, "z" * 300]
    schema = Schema.infer({"c": names * 10}, None, ["c"], None)
    assert schema.categories["c"] == tuple(sorted(digest(n) for n in names))
    matrix, _ = schema.encode({"c": [names[1], names[0], digest(names[1])]})
    code = {c: float(i) for i, c in enumerate(schema.categories["c"])}
    assert matrix[:, 0].tolist() == [code[digest(names[1])], code[digest(names[0])]] * 1 + [
        code[digest(names[1])]
    ]


def test_reference_categories_past_the_cap_fold_into_other() -> None:
    limits = Limits(max_categories=4)
    values = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d", "e", "f"]
    schema = Schema.infer({"c": values}, None, ["c"], None, limits)
    assert schema.categories["c"] == (OTHER, "a", "b", "c")
    matrix, _ = schema.encode({"c": ["d", "never-seen", "a"]}, limits)
    other = float(schema.categories["c"].index(OTHER))
    assert matrix[:, 0].tolist() == [other, other, 1.0]


def test_new_window_categories_past_the_cap_share_one_cell() -> None:
    limits = Limits(max_categories=3)
    schema = Schema.infer({"c": ["a", "b"]}, None, ["c"], None, limits)
    matrix, _ = schema.encode({"c": [f"new-{i}" for i in range(10_000)] + ["a"]}, limits)
    # "a" keeps its code; three unseen values get a cell each, the other 9,997 share one.
    assert len(set(matrix[:, 0].tolist())) == 5
    assert matrix[-1, 0] == 0.0


def test_error_messages_do_not_echo_long_values(service: DetectorService) -> None:
    service.fit("m", fit_body())
    window = make_table(100, seed=3)
    window["columns"]["temp"][0] = "w" * 1_000_000
    with TestClient(create_app(service)) as http:
        response = http.post("/v1/detectors/m/score", json={"window": window})
        assert response.status_code == 400 and len(response.content) < 1_000
        window["columns"] = {**make_table(100, seed=3)["columns"], "n" * 1_000_000: [1] * 100}
        response = http.post("/v1/detectors/m/score", json={"window": window})
        assert response.status_code == 400 and len(response.content) < 3_000


@pytest.mark.parametrize(
    ("limits", "body", "message"),
    [
        (Limits(max_rows=500), {"window": make_table(501, seed=2)}, "at most 500 (--max-rows)"),
        (
            Limits(max_columns=3),
            {"window": make_table(50, seed=2)},
            "at most 3 (--max-columns)",
        ),
        (
            Limits(max_body_bytes=10_000),
            {"window": make_table(1000, seed=2)},
            "limit of 10000 bytes (--max-body-bytes)",
        ),
    ],
)
def test_requests_over_a_limit_are_413_naming_it(
    tmp_path: Path, limits: Limits, body: dict[str, object], message: str
) -> None:
    DetectorService(tmp_path / "store").fit("m", fit_body())
    # The same store served under tighter limits (a restarted server serves what it holds).
    service = DetectorService(tmp_path / "store", limits)
    with TestClient(create_app(service)) as http:
        response = http.post("/v1/detectors/m/score", content=orjson.dumps(body))
        assert response.status_code == 413, response.text
        assert message in response.json()["error"]
        assert http.get("/healthz").status_code == 200


def test_a_streamed_body_past_the_limit_is_cut_off(tmp_path: Path) -> None:
    service = DetectorService(tmp_path / "store", Limits(max_body_bytes=100_000))

    def chunks():  # no content-length: the limit must hold while reading
        for _ in range(1_000):
            yield b" " * 10_000

    with TestClient(create_app(service)) as http:
        response = http.post("/v1/detectors/m/score", content=chunks())
    assert response.status_code == 413 and "--max-body-bytes" in response.json()["error"]


def test_largest_allowed_window_stays_within_a_bounded_peak(tmp_path: Path) -> None:
    """In process: a window at the row cap with long, all-distinct categories scores fine."""
    limits = Limits(max_rows=20_000)
    service = DetectorService(tmp_path / "store", limits)
    service.fit("m", fit_body())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    window = make_table(20_000, seed=4)
    window["columns"]["colour"] = [f"{i:06d}" + "q" * 1_000 for i in range(20_000)]
    report = service.score("m", {"window": window})
    assert report["status"] == "ok" and report["features"][2]["drifted"] is True
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300, grown_mib


def test_a_bundle_that_unpacks_past_the_limit_is_413(tmp_path: Path) -> None:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("feature_drift/x_ref.npy")
        info.size = 2_000_000  # zeros: compresses to a few KB
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    service = DetectorService(tmp_path / "store", Limits(max_body_bytes=100_000))
    with TestClient(create_app(service)) as http:
        response = http.put("/v1/detectors/k/bundle", content=out.getvalue())
    assert response.status_code == 413 and "unpacks to 2000" in response.json()["error"]
    assert not (tmp_path / "store" / "k").exists()
