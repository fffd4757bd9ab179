"""Model-ops metrics recomputed from the decision history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from loopstack.loop.history import OpsWindow, ops_metrics


def _d(kind: str, at: str, **fields: Any) -> dict[str, Any]:
    evidence = fields.pop("evidence", {})
    return {"kind": kind, "at": f"2011-{at}:00+00:00", "version": fields.pop("version", None),
            "pipeline_run_id": fields.pop("run", None), "evidence": evidence, "source": "loopstack/loop"}  # fmt: skip


HISTORY = [
    _d("promoted", "03-01T00:00", version="1"),
    _d("trigger_fired", "03-08T00:00", run="r1", evidence={"trigger_source": "drift"}),
    _d("pipeline_started", "03-08T00:00", run="r1"),
    _d("gate_passed", "03-08T00:00", version="2", evidence={"pipeline_run_id": "r1"}),
    _d("trigger_suppressed", "03-09T00:00", evidence={"trigger_source": "quality"}),
    _d("promoted", "03-18T00:00", version="2"),
    _d("trigger_fired", "03-22T00:00", run="r2", evidence={"trigger_source": "manual"}),
    _d("pipeline_started", "03-22T00:00", run="r2"),
    _d("gate_passed", "03-22T00:00", version="3", evidence={"pipeline_run_id": "r2"}),
    _d("rolled_back", "03-24T00:00", version="3"),
]


def test_ops_metrics_follow_the_decisions() -> None:
    ops = ops_metrics(HISTORY)
    assert (ops["retrainings"], ops["promotions"], ops["rollbacks"]) == (2, 2, 1)
    assert ops["lead_time_s"] == pytest.approx(10 * 86400)  # r1 fired 03-08, v2 promoted 03-18
    assert ops["time_to_recover_s"] == pytest.approx(10 * 86400)  # first degradation 03-08
    assert ops["change_failure_rate"] == pytest.approx(1 / 3)
    assert ops["retraining_cadence_s"] == pytest.approx(14 * 86400)
    assert ops["deployment_frequency_per_week"] == pytest.approx(2 / (23 / 7))


def test_an_empty_history_has_no_rates() -> None:
    ops = ops_metrics([])
    assert (
        ops["promotions"] == 0 and ops["change_failure_rate"] is None and ops["lead_time_s"] is None
    )


def test_rates_need_a_window_of_a_day_and_say_why_not() -> None:
    """Two promotions seconds apart once gave 3,642,627 deployments a week."""
    burst = [
        _d("promoted", "03-01T00:00", version="1"),
        {**_d("promoted", "03-01T00:00", version="2"), "at": "2011-03-01T00:00:05+00:00"},
    ]
    ops = ops_metrics(burst)
    assert ops["deployment_frequency_per_week"] is None
    assert "a rate needs at least 24 h" in ops["notes"]["deployment_frequency_per_week"]
    assert ops["window"]["start"].startswith("2011-03-01T00:00:00")
    assert ops["window"]["span_days"] == pytest.approx(5 / 86400)


def test_metrics_cover_the_models_current_timeline_only() -> None:
    """Live wall-clock decisions, then a replay of 2011 that rewound the model's clock."""
    live = [
        {**_d("promoted", "03-01T00:00", version="1"), "at": "2026-12-07T10:00:00+00:00",
         "recorded_at": "2026-12-07T10:00:00+00:00"},
        {**_d("trigger_fired", "03-01T00:00", run="r0", evidence={"trigger_source": "drift"}),
         "at": "2026-12-07T10:05:00+00:00", "recorded_at": "2026-12-07T10:05:00+00:00"},
    ]  # fmt: skip
    replay = [{**d, "recorded_at": "2026-12-07T11:00:00+00:00"} for d in HISTORY]
    window = OpsWindow(start=datetime(2011, 3, 1), end=datetime(2011, 3, 29),
                       recorded_since=datetime(2026, 12, 7, 10, 30))  # fmt: skip
    ops = ops_metrics(live + replay, window)
    assert (ops["promotions"], ops["window"]["decisions"], ops["window"]["excluded"]) == (2, 10, 2)
    # Not 4,675 days: the live degradation is not on the replay's timeline.
    assert ops["time_to_recover_s"] == pytest.approx(10 * 86400)
    assert ops["deployment_frequency_per_week"] == pytest.approx(2 / 4)  # 28 days of model time
    assert ops["window"]["end"].startswith("2011-03-29")
