"""What a drift window and reference hold is bounded whatever the logged values: long strings
become digests (the drift runtime's rule), rows keep scalars, categories are capped, a window
closes at the row cap, and a server that cannot be reached is waited for, never given up."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pytest
from loopstack.core.events import EventLog, open_event_log
from loopstack.core.settings import Settings
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift import DriftConsumer, DriftStore
from loopstack.monitoring.drift.bounds import (
    OTHER,
    Bounds,
    bound_reference,
    category_key,
    digest,
    fold,
)
from loopstack.monitoring.drift.bundles import BundleInfo
from loopstack.monitoring.drift.reporter import window_frame
from loopstack.monitoring.drift.tables import drift_failures, drift_rows, drift_windows
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import func, select

from tests.monitoring.drift.builders import (
    MODEL,
    DictBundles,
    RecordingPublisher,
    append,
    prediction_event,
    week_spec,
)
from tests.monitoring.drift.conftest import make_settings
from tests.monitoring.drift.test_log_errors import bundle


def test_digest_is_the_drift_runtime_rule() -> None:
    value = "é" * 100
    expected = "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]
    assert digest(value) == expected and len(expected) == 23


def test_a_row_keeps_bounded_scalars_only() -> None:
    bounds = Bounds(category_max_chars=32, max_row_bytes=1_024)
    long_value = "x" * 10_000_000
    row = bounds.row({"city": long_value, "n": 3, "t": 0.5, "tags": ["a"] * 1_000})
    assert row is not None
    assert orjson.loads(row) == {"city": digest(long_value), "n": 3, "t": 0.5, "tags": None}
    assert bounds.row({"city": "short", "y" * 300: 1}) == '{"city":"short"}'
    assert bounds.row({f"f{i}": i for i in range(200)}) is None  # too wide: left out
    assert bounds.row({f"f{i}": i for i in range(100_000)}) is None


def test_unseen_categories_past_the_cap_fold_into_other() -> None:
    values = ["a"] * 3 + [f"new-{i % 50}" for i in range(500)] + [True, 1, 1.0]
    folded = fold(values, ["a", 1], max_categories=10)
    # Reference categories stay (1.0 is 1); True is not 1: one more unseen category.
    assert folded[:3] == ["a"] * 3 and folded[-3:] == [OTHER, 1, 1.0]
    # "a", the 10 most frequent unseen values, 1 and OTHER (the other 40 and True).
    assert len({category_key(v) for v in folded}) == 13
    assert folded.count(OTHER) == 40 * 10 + 1


def test_a_folded_reference_takes_every_unknown_value_as_other() -> None:
    assert fold(["a", "b", "zzz"], ["a", OTHER], 100) == ["a", OTHER, OTHER]
    assert fold(["a", "b"], ["a"], 100) == ["a", "b"]


def test_reference_is_sampled_and_its_rare_categories_folded() -> None:
    frame = pd.DataFrame(
        {"c": [f"v{i % 30}" if i % 3 else "z" * 500 for i in range(3_000)], "x": range(3_000)}
    )
    bounded = bound_reference(frame, ["c"], Bounds(max_reference_rows=1_000, max_categories=5))
    assert len(bounded) == 1_000 and bounded["x"].is_monotonic_increasing
    assert set(bounded["c"]) <= {digest("z" * 500), OTHER} | {f"v{i}" for i in range(30)}
    assert bounded["c"].nunique() == 5 and OTHER in set(bounded["c"])


def test_window_frame_bounds_rows_stored_before_the_bounds() -> None:
    info = BundleInfo(("c", "x"), frozenset({"c"}), None, 100, {"c": ("a", "b")})
    rows = [{"c": "q" * 1_000, "x": 1.0}] + [{"c": f"n{i}", "x": 2.0} for i in range(100)]
    frame, dropped = window_frame(rows, info, Bounds(max_categories=3))
    # All seen once: the first three unseen stay (the long one as its digest), 98 fold.
    assert dropped == 0 and frame["c"].tolist()[:4] == [digest("q" * 1_000), "n0", "n1", OTHER]
    assert frame["c"].nunique() == 4


def _consumer(settings: Settings, log: EventLog, url: str, **spec: int) -> DriftConsumer:
    store = DriftStore.from_settings(settings)
    return DriftConsumer(
        settings,
        log,
        store,
        DetectorClient(url, timeout=0.5),
        DictBundles({(MODEL, "1"): bundle()}),
        specs=lambda _model: week_spec(window_seconds=60 * 24 * 3600, **spec),
        publisher=RecordingPublisher(),
        registry=CollectorRegistry(),
    )


def test_long_values_are_stored_as_digests_and_windows_close_at_the_row_cap(
    tmp_path: Path, unused_url: str
) -> None:
    settings = make_settings(tmp_path / "state", max_window_rows=25)
    log = open_event_log(settings)
    drift = _consumer(settings, log, unused_url, window_size=1_000, min_window_size=5)
    start = datetime(2011, 1, 3, tzinfo=UTC)
    huge = "storm" * 2_000_000  # 10 MB
    events = [
        prediction_event(
            {"temp": 0.2, "weathersit": huge if i == 0 else "clear"},
            1.0,
            start + timedelta(hours=i),
        )
        for i in range(60)
    ]
    append(log, events)
    drift.drain()
    with drift.store.engine.connect() as conn:
        w, r = drift_windows.c, drift_rows.c
        sizes = [size for (size,) in conn.execute(select(w.size).order_by(w.window_no))]
        longest = conn.execute(select(func.max(func.length(r.data)))).scalar()
        stored = {orjson.loads(data)["weathersit"] for (data,) in conn.execute(select(r.data))}
    assert sizes == [25, 25, 10]  # the spec's 1,000 capped at 25
    assert longest is not None and longest < 200
    assert stored == {digest(huge), "clear"}
    drift.close()
    drift.store.close()
    log.close()


def test_a_server_that_cannot_be_reached_is_waited_for_with_back_off_never_given_up(
    settings: Settings, unused_url: str
) -> None:
    log = open_event_log(settings)
    drift = _consumer(settings, log, unused_url, window_size=10, min_window_size=5)
    append(log, [
        prediction_event({"temp": 0.2}, 1.0, datetime(2011, 1, 3, tzinfo=UTC) + timedelta(hours=i))
        for i in range(10)
    ])  # fmt: skip
    drift.drain()
    for _ in range(20):
        drift.sweep()
        time.sleep(0.05)
    with drift.store.engine.connect() as conn:
        state = conn.execute(select(drift_windows.c.state)).scalar()
        failures = conn.execute(select(func.count()).select_from(drift_failures)).scalar()
    assert state == "closed" and failures == 0  # still waiting, no attempt counted
    attempts = drift.metrics.registry.get_sample_value(
        "loopstack_drift_score_failures_total", {"model": MODEL, "version": "1"}
    )
    # 20 sweeps over ~1 s with back-off doubling from 0.2 s: a handful of attempts, not 20.
    assert attempts is not None and 1 <= attempts <= 5, attempts
    drift.close()
    drift.store.close()
    log.close()


@pytest.mark.parametrize("limit", [31, 0])
def test_settings_refuse_a_category_limit_below_a_digest(tmp_path: Path, limit: int) -> None:
    with pytest.raises(ValidationError):
        make_settings(tmp_path / "s", category_max_chars=limit)
