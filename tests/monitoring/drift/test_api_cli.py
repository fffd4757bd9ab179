"""`GET /v1/models/{name}/drift` over the read table, and the PNG of `loopstack drift --plot`."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from loopstack.api.routes.drift import router
from loopstack.cli.drift import write_plot
from loopstack.monitoring.drift import DriftQueries, DriftStore
from loopstack.monitoring.drift.tables import drift_results, drift_windows
from sqlalchemy import insert


def fill(store: DriftStore, windows: int = 3) -> None:
    """Reported windows of bike-demand v1: temp drifts from the 2nd window on."""
    start = datetime(2011, 6, 1)
    with store.engine.begin() as conn:
        for n in range(windows):
            begin, end = start + timedelta(days=7 * n), start + timedelta(days=7 * n + 6)
            drifted = n > 0
            conn.execute(
                insert(drift_windows).values(
                    model="bike-demand", version="1", window_no=n, state="reported",
                    start_time=begin, end_time=end, size=168, opened_at=begin,
                    status="ok", drifted=drifted, reported_at=end,
                )
            )  # fmt: skip
            base = {
                "model": "bike-demand", "version": "1", "window_no": n, "status": "ok",
                "window_start": begin, "window_end": end, "sample_size": 168, "reported_at": end,
            }  # fmt: skip
            conn.execute(
                insert(drift_results),
                [
                    {**base, "kind": "feature", "feature": "temp", "test": "ks",
                     "statistic": 0.9 if drifted else 0.3, "effect": 0.9 if drifted else 0.3,
                     "p_value": 1e-40 if drifted else 0.2, "threshold": 0.01,
                     "significant": drifted, "drifted": drifted},
                    {**base, "kind": "feature", "feature": "weathersit", "test": "chi2",
                     "statistic": 3.0, "effect": 0.05, "p_value": 0.4, "threshold": 0.01,
                     "significant": False, "drifted": False},
                    {**base, "kind": "outlier", "feature": "outlier_fraction",
                     "test": "iforest", "statistic": 0.02, "effect": 0.02, "p_value": None,
                     "threshold": 0.1, "significant": False, "drifted": False},
                ],
            )  # fmt: skip


class _Services:
    def __init__(self, store: DriftStore) -> None:
        self.drift = DriftQueries(store)


def test_route_returns_latest_windows_newest_first(store: DriftStore) -> None:
    fill(store)
    app = FastAPI()
    app.include_router(router(_Services(store)))
    with TestClient(app) as http:
        body: dict[str, Any] = http.get("/v1/models/bike-demand/drift", params={"last": 2}).json()
        empty = http.get("/v1/models/nobody/drift").json()
    assert [w["window_no"] for w in body["windows"]] == [2, 1]
    latest = body["windows"][0]
    assert latest["drifted"] is True and latest["sample_size"] == 168
    temp = next(f for f in latest["features"] if f["feature"] == "temp")
    assert temp["drifted"] is True and temp["p_value"] < 1e-30
    assert empty == {"model": "nobody", "windows": []}


def test_plot_writes_a_png(store: DriftStore, tmp_path: Path) -> None:
    fill(store, windows=4)
    path = tmp_path / "drift.png"
    write_plot("bike-demand", DriftQueries(store).windows("bike-demand"), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
