"""A drift consumer killed with SIGKILL mid-window (inside a batch transaction) and restarted:
the window resumes from the event log and the store, and no window is reported twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from loopstack.core.events import open_event_log
from loopstack.core.settings import Settings

from tests.monitoring.drift.builders import PROJECT_DIR, append, events_of, logged_drift
from tests.monitoring.drift.conftest import JanFeb, make_settings

pytestmark = pytest.mark.integration  # real detector server, consumer processes


def run_child(settings: Settings, bundle: Path, kill_at: int | None) -> int:
    """Run the consumer process to its end or its SIGKILL; return its exit status."""
    env = {
        **os.environ,
        **settings.as_env(),
        "DRIFT_BUNDLE": str(bundle),
        "DRIFT_KILL_AT": str(kill_at or ""),
        "PYTHONPATH": str(PROJECT_DIR),
    }
    child = subprocess.run(
        [sys.executable, "-m", "tests.monitoring.drift.consumer_child"],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert child.returncode in (0, -signal.SIGKILL), child.stderr[-3000:]
    return child.returncode


def test_killed_consumer_resumes_its_window_and_reports_each_once(
    tmp_path: Path, jan_feb: JanFeb, detector_url: str
) -> None:
    settings = make_settings(tmp_path / "state", detector_url=detector_url)
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(jan_feb.bundle)
    hours = jan_feb.hours
    # 3 winter weeks + 2 July weeks + 100 more hours: 5 full windows and one open.
    july = hours[hours["month"] == 7]
    frame = pd.concat([*jan_feb.held_out, july.iloc[:436]])
    log = open_event_log(settings)
    try:
        append(log, events_of(frame, jan_feb.predictor))
    finally:
        log.close()

    # Killed inside the batch that fills the 2nd window, then inside the 4th window's batch.
    assert run_child(settings, bundle, kill_at=300) == -signal.SIGKILL
    assert run_child(settings, bundle, kill_at=250) == -signal.SIGKILL
    assert run_child(settings, bundle, kill_at=None) == 0
    assert run_child(settings, bundle, kill_at=None) == 0  # a rerun changes nothing

    log = open_event_log(settings)
    try:
        reported = logged_drift(log)
    finally:
        log.close()
    per_window = Counter((d["window_no"], d["kind"]) for d in reported)
    assert sorted({w for w, _ in per_window}) == [0, 1, 2, 3, 4]
    assert set(per_window.values()) == {1}, per_window  # no window reported twice
    features = sorted((d for d in reported if d["kind"] == "feature"), key=lambda d: d["window_no"])
    assert [d["sample_size"] for d in features] == [168] * 5
    assert [d["drifted"] for d in features] == [False, False, False, True, True]
    assert len({d["id"] for d in reported}) == len(reported)
