"""A feedback consumer killed with SIGKILL mid-batch and restarted ends where an uninterrupted
run ends: same joins, same windows and metrics, orphans in the DLQ with their reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from loopstack.core.events import EventService, open_event_log
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.settings import Settings, load_settings
from loopstack.monitoring.feedback import QualityQueries, ReadModel

from tests.monitoring.feedback.builders import PROJECT_DIR, bike_scenario, credit_scenario
from tests.monitoring.feedback.test_join import append

JOIN_S = 1.0  # short, so the run waits little for its orphans


def settings_in(folder: Path, read_model_url: str) -> Settings:
    """Settings of one run: its own event log and read model."""
    return load_settings(
        project_dir=PROJECT_DIR,
        state_dir=folder,
        events={
            "backend": "sqlite",
            "partitions": 4,
            "batch_size": 64,
            "group_session_timeout_ms": 1000,
            "group_heartbeat_interval_ms": 200,
        },
        feedback={"read_model_url": read_model_url, "push_sources": {}},
    )


def start_child(settings: Settings, kill_at: int | None) -> subprocess.Popen[str]:
    """Start the consumer process (it runs to its end, or to its SIGKILL)."""
    env = {
        **os.environ,
        **settings.as_env(),
        "FB_JOIN_S": str(JOIN_S),
        "FB_WINDOW": "20",
        "FB_KILL_AT": str(kill_at or ""),
        "PYTHONPATH": str(PROJECT_DIR),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.monitoring.feedback.consumer_child"],
        env=env,
        cwd=PROJECT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str]) -> int:
    """Wait for a child; return its exit status."""
    _, stderr = child.communicate(timeout=120)
    assert child.returncode in (0, -signal.SIGKILL), stderr[-3000:]
    return child.returncode


def run_child(settings: Settings, kill_at: int | None) -> int:
    """Run the consumer process to its end (or its SIGKILL); return its exit status."""
    return finish(start_child(settings, kill_at))


def outcome_of(settings: Settings) -> dict[str, Any]:
    """Everything the run produced: joins, windows of both models, dead letters."""
    read_model = ReadModel.from_settings(settings)
    queries = QualityQueries(read_model)
    log = open_event_log(settings)
    try:
        letters = EventService(log).dead_letters(OUTCOMES, limit=1000).items
        return {
            "joined": {m: queries.joined(m) for m in ("bike-demand", "credit-default")},
            "windows": {
                m: [
                    {k: v for k, v in w.items() if k != "closed_at"}
                    for w in queries.quality(m)["windows"]
                ]
                for m in ("bike-demand", "credit-default")
            },
            "dead": sorted(
                (i["dead_letter"]["event_id"], i["dead_letter"]["reason"]) for i in letters
            ),
        }
    finally:
        read_model.close()
        log.close()


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def test_sigkill_mid_batch_then_restart_equals_an_uninterrupted_run(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bike, credit = bike_scenario(n=80), credit_scenario(n=80)
    predictions = bike.predictions + credit.predictions
    outcomes = bike.early + credit.early + bike.outcomes + credit.outcomes
    folders: dict[str, Settings] = {}
    for name in ("steady", "killed"):
        if store == "postgres":
            from tests.monitoring.feedback.conftest import fresh_database

            url = fresh_database(request.getfixturevalue("postgres"))
        else:
            url = f"sqlite:///{tmp_path / name / 'read_model.db'}"
        settings = settings_in(tmp_path / name, url)
        log = open_event_log(settings)
        append(log, OUTCOMES, bike.early + credit.early)
        append(log, PREDICTIONS, predictions)
        append(log, OUTCOMES, outcomes)
        log.close()
        folders[name] = settings
    steady_child = start_child(folders["steady"], kill_at=None)  # runs beside the killed ones
    assert run_child(folders["killed"], kill_at=300) == -signal.SIGKILL
    assert run_child(folders["killed"], kill_at=None) == 0
    assert finish(steady_child) == 0
    runs = {name: outcome_of(settings) for name, settings in folders.items()}
    steady, killed = runs["steady"], runs["killed"]
    assert len(steady["joined"]["bike-demand"]) == 160
    assert len(steady["windows"]["credit-default"]) == 4
    for part in steady:
        assert killed[part] == steady[part], part
    assert {event_id for event_id, _ in steady["dead"]} == bike.orphans
    assert {reason for _, reason in steady["dead"]} == {"orphan"}
