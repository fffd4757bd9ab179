"""Model-ops metrics recomputed from the decision history."""

from __future__ import annotations

from typing import Any

import pytest
from loopstack.loop.history import ops_metrics


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
