"""Drift memory is bounded per window whatever the values (issue 20).

Its own detector server process (the session's is never stopped or signalled):
- fed the largest windows its limits allow (a body just under `--max-body-bytes`, the row and
  column caps, 256-character categories all distinct, strings just past the digest length, one
  30 MB value), its peak RSS (`VmHWM`) stays under `PEAK_RSS_BOUND_MIB`, and bigger bodies are
  413 before they are read whole;
- a prediction event with a 10 MB category value goes through the log, the drift consumer and
  this server: reported, the server up, its peak RSS still bounded, the next window reported;
- a window the server hangs on (SIGSTOP: connections accepted, never answered) is counted each
  time and given up after `drift.max_score_attempts` with its reason; after SIGCONT the server
  answers and the version's next window is reported.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from loopstack.core.events import EventLog, open_event_log
from loopstack.core.processes import RunningProcess, Supervisor, free_port
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.detector_runtime import detector_server_spec, drift_python
from loopstack.monitoring.drift import DriftConsumer, DriftQueries, DriftStore
from loopstack.monitoring.errors import DriftRuntimeMissing
from prometheus_client import CollectorRegistry

from tests.monitoring.drift.builders import (
    MODEL,
    WEATHER,
    DictBundles,
    Predictor,
    RecordingPublisher,
    append,
    bike_hours,
    events_of,
    prediction_event,
    reference,
    week_spec,
    weeks,
)
from tests.monitoring.drift.conftest import make_settings

pytestmark = pytest.mark.integration

PEAK_RSS_BOUND_MIB = 1_024
"""Stated in docs/robustness.md ("Drift memory"), with the figure measured."""
MAX_BODY = 32 * 1024 * 1024
"""The server's default `--max-body-bytes` (drift runtime `limits.Limits`)."""


@dataclass
class OwnDetector:
    """This module's detector server process."""

    url: str
    running: RunningProcess

    def peak_rss_mib(self) -> float:
        """The server process's peak resident set (VmHWM), in MiB."""
        status = Path(f"/proc/{self.running.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def healthy(self) -> bool:
        with DetectorClient(self.url) as client:
            return client.healthy()


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnDetector]:
    try:
        python = drift_python()
    except DriftRuntimeMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install the drift runtime: {exc}")
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("drift-memory")
    spec = detector_server_spec(free_port(), root / "store", python=python, name="drift-memory")
    supervisor = Supervisor(root / "state")
    running = supervisor.start(spec)
    try:
        supervisor.wait_healthy(running, timeout=120)
        assert spec.url is not None
        yield OwnDetector(spec.url, running)
    finally:
        os.killpg(running.pid, signal.SIGCONT)  # never leave it stopped
        supervisor.stop(spec.name, grace=5)


def _post(url: str, path: str, body: bytes, timeout: float = 120.0) -> httpx.Response:
    return httpx.post(
        url + path, content=body, headers={"content-type": "application/json"}, timeout=timeout
    )


def _table(n: int, rng: np.random.Generator, colour: list[Any]) -> dict[str, Any]:
    return {
        "columns": {
            "temp": rng.normal(size=n).round(3).tolist(),
            "hum": rng.uniform(size=n).round(3).tolist(),
            "colour": colour,
        }
    }


def _under_the_limit(make: Any, rows: int) -> bytes:
    """The body `make(rows)`, with rows lowered until it fits under MAX_BODY."""
    while True:
        body = orjson.dumps(make(rows))
        if len(body) <= MAX_BODY:
            return body
        rows = int(rows * MAX_BODY / len(body) * 0.99)


def test_peak_rss_stays_bounded_at_the_largest_allowed_windows(detector: OwnDetector) -> None:
    rng = np.random.default_rng(0)
    # A reference at the category cap: 1,000 distinct 256-character values.
    names = [f"{i:04d}".ljust(256, "c") for i in range(1_000)]
    ref = {"reference": _table(5_000, rng, [names[i % 1_000] for i in range(5_000)])}
    fitted = _post(
        detector.url, "/v1/detectors/big/fit", orjson.dumps(ref | {"categorical": ["colour"]})
    )
    assert fitted.status_code == 200, fitted.text
    wide_ref = {
        "reference": {
            "columns": {f"x{j}": rng.normal(size=200).round(2).tolist() for j in range(512)}
        }
    }
    assert _post(detector.url, "/v1/detectors/wide/fit", orjson.dumps(wide_ref)).status_code == 200

    windows = {
        # 256 characters (the longest kept as is), every value a new category.
        "distinct-256": _under_the_limit(
            lambda n: {"window": _table(n, rng, [f"{i:08d}".ljust(256, "d") for i in range(n)])},
            100_000,
        ),
        # 257+: each becomes a digest.
        "digests": _under_the_limit(
            lambda n: {"window": _table(n, rng, [f"{i:08d}".ljust(300, "h") for i in range(n)])},
            100_000,
        ),
        # The row cap, short values.
        "rows": _under_the_limit(
            lambda n: {"window": _table(n, rng, [names[i % 7] for i in range(n)])}, 100_000
        ),
        # One 30 MB value among short ones.
        "one-huge": orjson.dumps(
            {"window": _table(1_000, rng, ["x" * 30_000_000] + [names[0]] * 999)}
        ),
    }
    for name, body in windows.items():
        answer = _post(detector.url, "/v1/detectors/big/score", body)
        assert answer.status_code == 200, (name, answer.text[:300])
        assert answer.json()["status"] == "ok"
    # The column cap, as many rows of small numbers as fit.
    wide = _under_the_limit(
        lambda n: {"window": {"columns": {f"x{j}": [0] * n for j in range(512)}}}, 100_000
    )
    assert _post(detector.url, "/v1/detectors/wide/score", wide).status_code == 200
    # Over the limits: refused before the body is held whole.
    over = b'{"window": {"columns": {"colour": ["' + b"y" * MAX_BODY + b'"]}}}'
    refused = _post(detector.url, "/v1/detectors/big/score", over)
    assert refused.status_code == 413 and "--max-body-bytes" in refused.json()["error"]

    peak = detector.peak_rss_mib()
    print(f"detector server peak RSS after the largest windows: {peak:.0f} MiB")
    assert peak < PEAK_RSS_BOUND_MIB, peak
    assert detector.healthy()


def _bike_bundle(detector: OwnDetector) -> tuple[bytes, Predictor, list[pd.DataFrame]]:
    hours = bike_hours()
    winter = hours[hours["month"] <= 2]
    predictor = Predictor.fit(winter)
    ref = reference(winter, predictor)[[*WEATHER, "prediction"]]
    with DetectorClient(detector.url) as client:
        bundle = client.fit(
            "memory-bike", ref, categorical=["weathersit"], prediction="prediction", min_size=24
        )
    return bundle, predictor, weeks(winter)


def _consumer(
    tmp_path: Path, url: str, bundle: bytes, timeout: float = 60.0
) -> tuple[DriftConsumer, EventLog, DriftStore, RecordingPublisher]:
    settings = make_settings(tmp_path / "state", max_score_attempts=3)
    log = open_event_log(settings)
    store = DriftStore.from_settings(settings)
    publisher = RecordingPublisher()
    consumer = DriftConsumer(
        settings,
        log,
        store,
        DetectorClient(url, timeout=timeout),
        DictBundles({(MODEL, "1"): bundle}),
        specs=lambda _model: week_spec(window_seconds=60 * 24 * 3600),
        publisher=publisher,
        registry=CollectorRegistry(),
    )
    return consumer, log, store, publisher


def test_a_10mb_category_event_is_reported_and_the_server_stays_bounded(
    detector: OwnDetector, tmp_path: Path
) -> None:
    bundle, predictor, blocks = _bike_bundle(detector)
    consumer, log, store, publisher = _consumer(tmp_path, detector.url, bundle)
    try:
        first = events_of(blocks[0], predictor)
        poison = dict(first[3].data["inputs"], weathersit="storm" * 2_000_000)  # 10 MB
        at = datetime(2011, 1, 1, 3, tzinfo=UTC)
        first[3] = prediction_event(poison, 10.0, at)
        append(log, [*first, *events_of(blocks[1], predictor)])
        consumer.drain()
        consumer.sweep()
        reported = sorted((d["window_no"], d["status"]) for d in publisher.data("feature"))
        assert reported == [(0, "ok"), (1, "ok")]
        assert detector.healthy()
        assert detector.peak_rss_mib() < PEAK_RSS_BOUND_MIB
    finally:
        consumer.close()
        store.close()
        log.close()


def test_a_window_the_server_hangs_on_is_given_up_and_the_next_one_reported(
    detector: OwnDetector, tmp_path: Path
) -> None:
    bundle, predictor, blocks = _bike_bundle(detector)
    consumer, log, store, publisher = _consumer(tmp_path, detector.url, bundle, timeout=1.0)
    try:
        append(log, events_of(blocks[0], predictor))
        os.killpg(detector.running.pid, signal.SIGSTOP)
        try:
            consumer.drain()
            deadline = datetime.now(UTC) + timedelta(seconds=30)
            while datetime.now(UTC) < deadline:
                consumer.sweep()
                windows = DriftQueries(store).windows(MODEL)
                if windows and windows[0]["status"] == "failed":
                    break
        finally:
            os.killpg(detector.running.pid, signal.SIGCONT)
        [failed] = DriftQueries(store).windows(MODEL)
        assert failed["status"] == "failed", failed
        assert "after 3 attempt(s)" in failed["error"] and "Timeout" in failed["error"]
        assert publisher.data("feature") == []

        assert detector.healthy()
    finally:
        consumer.close()
        store.close()
        log.close()
    # The consumer restarted with the default timeout (the 1 s one is for the hang only, and a
    # loaded machine can take longer once the server works through what waited).
    again, log, store, publisher = _consumer(tmp_path, detector.url, bundle)
    try:
        append(log, events_of(blocks[1], predictor))
        again.drain()
        again.sweep()
        assert [(d["window_no"], d["status"]) for d in publisher.data("feature")] == [(1, "ok")]
        assert [w["status"] for w in DriftQueries(store).windows(MODEL)] == ["ok", "failed"]
    finally:
        again.close()
        store.close()
        log.close()
