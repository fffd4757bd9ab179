"""The closed loop end to end: a shortened 2011 replay on the embedded backend.

A stack of its own (the loop controls the model here; the session stack's tests deploy by hand),
a copy of the bike-demand spec with small windows and a short rollout, a few weeks of traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import matplotlib.image
import numpy as np
import pytest
import yaml
from loopstack.client import LoopstackClient
from loopstack.demo.__main__ import run_demo
from loopstack.demo.replay import Replay, feature_feed, labelled_history
from loopstack.demo.report import (
    FIGURE_GAP_PX,
    HEADER_HEIGHT_PX,
    PLOT_HEIGHT_PX,
    PLOT_TITLES,
    PLOT_WIDTH_PX,
)
from loopstack.demo.summary import DemoResults, metric

from tests.charts.tools import CHART
from tests.conftest import PROJECT_DIR, run_cli, settings_from

SMALL = {
    "quality": {"window_size": 48, "consecutive_windows": 1},
    "drift": {"window_size": 72, "min_window_size": 24},
    "trigger": {"cooldown_s": 7 * 86400, "schedule": None},
    "rollout": {"effect_size": 0.35, "canary_steps": [25, 100], "step_min_samples": 24},
    # Five weeks of March feedback alone rarely beat the Jan-Feb model (the demo shows that over
    # the year); here retrainings also read the Jan-Feb file, which ends before the replay, so
    # the rollout's mechanics are exercised within the short replay.
    "training": {"labels": "all"},
}


@pytest.fixture(scope="module")
def replayed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DemoResults, Path, dict[str, str]]]:
    """Five replayed weeks of March 2011 (demand grows fast), with one sabotaged retraining."""
    project = tmp_path_factory.mktemp("loop-project")
    # The project's code and data, with a models/ of its own (the drift runtime's environment
    # lives under platform/).
    for name in ("pipelines", "feature_repo", "platform"):
        (project / name).symlink_to(PROJECT_DIR / name)
    model_dir = project / "models" / "bike-demand"
    shutil.copytree(PROJECT_DIR / "models" / "bike-demand", model_dir)
    spec = yaml.safe_load((model_dir / "model.yaml").read_text())
    for section, values in SMALL.items():
        spec[section] = {**spec.get(section, {}), **values}
    (model_dir / "model.yaml").write_text(yaml.safe_dump(spec))
    args = argparse.Namespace(
        model="bike-demand", train_until="2011-03-01", until="2011-04-08",
        sabotage_at="2011-03-22", pace=0.02, state_dir=project / ".loopstack", report=None,
        picture=None, keep=True, project_dir=project,
    )  # fmt: skip
    results, report, stack = run_demo(args)
    try:
        yield results, report, {**os.environ, **stack.env}
    finally:
        stack.down()


def _kinds(results: DemoResults, kind: str) -> list[dict]:
    return [d for d in results.history["decisions"] if d["kind"] == kind]


def test_a_drift_or_quality_alert_retrains_and_the_challenger_is_shadowed_canaried_promoted(
    replayed: tuple[DemoResults, Path, dict[str, str]],
) -> None:
    results = replayed[0]
    fired = [d for d in _kinds(results, "trigger_fired")
             if d["evidence"]["trigger_source"] in ("drift", "quality")]  # fmt: skip
    assert fired, "no drift or quality trigger fired"
    promoted = [d for d in _kinds(results, "promoted") if d["evidence"].get("actor") == "loop"
                and d["evidence"].get("previous_champion")]  # fmt: skip
    assert promoted, "the loop promoted no retrained version"
    version = promoted[0]["version"]
    modes = [
        d["evidence"]["mode"]
        for d in _kinds(results, "traffic_changed")
        if version in (d["traffic"] or {}) and d["evidence"].get("mode") != "champion"
    ]
    assert modes[:2] == ["shadow", "canary"], modes
    canary = next(d for d in _kinds(results, "traffic_changed")
                  if version in (d["traffic"] or {}) and d["evidence"].get("mode") == "canary")  # fmt: skip
    evidence = canary["evidence"]
    assert evidence["n"] >= evidence["horizon"] and evidence["p_better"] < evidence["alpha"]


def test_the_sabotaged_challenger_is_rolled_back_and_the_champion_keeps_its_traffic(
    replayed: tuple[DemoResults, Path, dict[str, str]],
) -> None:
    results = replayed[0]
    sabotage = next(d for d in _kinds(results, "trigger_fired")
                    if d["evidence"].get("params", {}).get("sabotage") == "shuffle-labels")  # fmt: skip
    gate = next(d for d in results.history["decisions"] if d["kind"] in ("gate_passed", "gate_failed")
                and d["evidence"].get("pipeline_run_id") == sabotage["pipeline_run_id"])  # fmt: skip
    assert gate["kind"] == "gate_passed", "the poisoned holdout lets the broken model pass the gate"
    rolled = [d for d in _kinds(results, "rolled_back") if d["version"] == gate["version"]]
    assert rolled and "worse" in rolled[0]["reason"]
    served = results.predictions
    assert not (
        (served["version"] == gate["version"]) & served["route"].isin(["champion", "canary"])
    ).any()


def test_the_loop_beats_the_static_model_over_the_replay(
    replayed: tuple[DemoResults, Path, dict[str, str]],
) -> None:
    results = replayed[0]
    served = results.served
    outcome = served["outcome"].to_numpy(dtype=float)
    loop = metric(results.spec, outcome, served["score"].to_numpy(dtype=float))
    static = metric(results.spec, outcome, results.static)
    assert loop is not None and static is not None and loop < static


def test_history_and_retrain_through_the_cli(
    replayed: tuple[DemoResults, Path, dict[str, str]],
) -> None:
    env = replayed[2]
    shown = run_cli(env, "history", "bike-demand", "--json")
    assert shown.returncode == 0, shown.stderr
    history = json.loads(shown.stdout)
    assert history["metrics"]["promotions"] >= 2 and history["metrics"]["rollbacks"] >= 1
    assert {d["kind"] for d in history["decisions"]} >= {
        "trigger_fired", "pipeline_started", "pipeline_finished", "gate_passed",
        "traffic_changed", "promoted", "rolled_back"}  # fmt: skip
    table = run_cli(env, "history", "bike-demand")
    assert "change-failure rate" in table.stdout and "time to recover" in table.stdout
    unknown = run_cli(env, "retrain", "no-such-model")
    assert unknown.returncode == 3 and "no-such-model" in unknown.stderr
    bad = run_cli(env, "retrain", "bike-demand", "--param", "sabotage")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr


def test_the_report_renders_offline_with_every_plot_drawn(
    replayed: tuple[DemoResults, Path, dict[str, str]], tmp_path: Path
) -> None:
    report = replayed[1]
    page = report.read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    chromium = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "headless Chromium is missing: `make test` installs chromium-headless-shell"
            )
        pytest.skip(
            "headless Chromium is missing: install chromium-headless-shell (`make system-deps`)"
        )
    shot = tmp_path / "report.png"
    height = HEADER_HEIGHT_PX + len(PLOT_TITLES) * (PLOT_HEIGHT_PX + FIGURE_GAP_PX)
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         # Networking off: no proxy answers and no host name resolves.
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         "--host-resolver-rules=MAP * ~NOTFOUND",
         f"--window-size={PLOT_WIDTH_PX + 40},{height}", f"--screenshot={shot}", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    for i, title in enumerate(PLOT_TITLES):
        top = HEADER_HEIGHT_PX + i * (PLOT_HEIGHT_PX + FIGURE_GAP_PX)
        area = pixels[top : top + PLOT_HEIGHT_PX, :PLOT_WIDTH_PX]
        drawn = (area < 0.95).any(axis=2).mean()
        colours = len(np.unique((area * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        assert drawn > 0.02 and colours > 20, f"plot {title!r} looks blank ({drawn:.1%} drawn)"


# Every process of the stack that serves Prometheus metrics, by the setting naming its port.
METRICS_PORTS = (
    "API__PORT", "SERVING__REST_PORT", "DRIFT__METRICS_PORT", "FEEDBACK__METRICS_PORT",
    "LOOP__METRICS_PORT",
)  # fmt: skip


def test_every_metric_the_alerts_and_dashboards_use_is_exported_live(
    replayed: tuple[DemoResults, Path, dict[str, str]],
) -> None:
    """No alert or panel on a metric nothing exports: scrape each component after the replay."""
    env = replayed[2]
    families: set[str] = set()
    for setting in METRICS_PORTS:
        url = f"http://127.0.0.1:{env['LOOPSTACK_' + setting]}/metrics"
        scrape = httpx.get(url, timeout=10)
        assert scrape.status_code == 200, f"{url}: {scrape.status_code}"
        # Sample names, and families declared before their first labelled sample.
        families |= set(re.findall(r"^(?:# TYPE )?(loopstack_[a-z0-9_]+)", scrape.text, re.M))
    used = set((CHART / "files" / "metrics.txt").read_text().split())
    # A counter's or histogram's TYPE line names the family without its sample suffix.
    missing = {
        m for m in used
        if not {m, m.removesuffix("_total"), m.removesuffix("_bucket")} & families
    }  # fmt: skip
    assert not missing, f"rules or dashboards use metrics no component exports: {sorted(missing)}"


def _scalar(value: object) -> object:
    """A JSON-ready value (numpy scalars to Python)."""
    return value.item() if hasattr(value, "item") else value


def _quiet(history: dict[str, Any], for_s: float = 15) -> bool:
    """No retraining in flight and no decision recorded for `for_s` seconds."""
    if (history["state"] or {}).get("phase") == "training":
        return False
    last = history["decisions"][0]["recorded_at"] if history["decisions"] else None
    return (
        last is None or (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds() > for_s
    )


def test_a_replay_after_live_wall_clock_requests_still_triggers_shadows_and_decides(
    replayed: tuple[DemoResults, Path, dict[str, str]],
) -> None:
    """Live requests (today) first, then more of 2011: the model's clock follows its traffic
    back, so the replay's retraining is shadowed on the replayed pairs and decided.

    Runs last: it goes on with the module's stack after the other tests have read it."""
    results, _, env = replayed
    spec, settings = results.spec, settings_from(env)
    serving_url = f"http://{settings.host}:{settings.serving.rest_port}"
    rows = labelled_history(settings.feature_repo_dir, spec)
    feed = feature_feed(settings.feature_repo_dir, spec)
    with LoopstackClient.from_settings(settings) as client:
        # A retraining left from the replay (or fired by its last alerts, still on their way
        # to the controller) would finish on the live clock: wait until the loop is quiet.
        deadline = time.monotonic() + 600
        while not _quiet(client.get(f"/v1/models/{spec.name}/history", limit=1)):
            assert time.monotonic() < deadline, "the replay's last retraining never finished"
            time.sleep(0.5)
        live_from = datetime.now(UTC)
        later = rows[rows["event_timestamp"] >= datetime(2011, 4, 8, tzinfo=UTC)]
        for row in later.head(5).to_dict("records"):
            instance = {f: _scalar(row[f]) for f in spec.request_fields} | (feed or {}).get(
                row["event_timestamp"], {}
            )
            live = httpx.post(f"{serving_url}/v1/models/{spec.name}:predict",
                              json={"instances": [instance]}, timeout=30)  # fmt: skip
            assert live.status_code == 200, live.text
        deadline = time.monotonic() + 120
        while not client.get(f"/v1/models/{spec.name}/history", limit=1)["model_time"].startswith(
            str(live_from.year)
        ):
            assert time.monotonic() < deadline, "the loop's clock never saw the live requests"
            time.sleep(0.5)

        replay = Replay(client, serving_url, spec, rows, pace_s=0.02, feed=feed,
                        sabotage_at=datetime(2011, 4, 9, tzinfo=UTC))  # fmt: skip
        try:
            replay.run(datetime(2011, 4, 8, tzinfo=UTC), datetime(2011, 4, 22, tzinfo=UTC))
        finally:
            replay.close()
        history = client.get(f"/v1/models/{spec.name}/history")

    assert history["model_time"].startswith("2011-04-2"), history["model_time"]
    after = [d for d in history["decisions"]
             if datetime.fromisoformat(d["recorded_at"]) >= live_from.replace(microsecond=0)]  # fmt: skip
    assert after and all(d["at"].startswith("2011-") for d in after), [
        (d["kind"], d["at"]) for d in after if not d["at"].startswith("2011-")
    ]
    sabotage = next(d for d in after if d["kind"] == "trigger_fired"
                    and d["evidence"].get("params", {}).get("sabotage") == "shuffle-labels")  # fmt: skip
    gate = next(d for d in after if d["kind"] in ("gate_passed", "gate_failed")
                and d["evidence"].get("pipeline_run_id") == sabotage["pipeline_run_id"])  # fmt: skip
    assert gate["kind"] == "gate_passed"
    shadowed = [d for d in after if d["kind"] == "traffic_changed"
                and d["evidence"].get("mode") == "shadow" and gate["version"] in (d["traffic"] or {})]  # fmt: skip
    assert shadowed, "the replay's challenger was never shadowed"
    decided = [d for d in after if d["kind"] == "rolled_back" and d["version"] == gate["version"]]
    pairs = re.search(r"on (\d+) paired requests", decided[0]["reason"]) if decided else None
    assert pairs and int(pairs.group(1)) > 0, f"not decided on replayed pairs: {decided}"
    metrics = history["metrics"]
    assert metrics["window"]["start"].startswith("2011-04-"), metrics["window"]
    frequency = metrics["deployment_frequency_per_week"]
    assert frequency is None or frequency < 10, metrics
    assert metrics["time_to_recover_s"] is None or metrics["time_to_recover_s"] < 30 * 86400
