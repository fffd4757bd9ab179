"""The loop's Prometheus metrics: decisions, retrainings, rollbacks and model-ops gauges."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["LoopMetrics"]

_GAUGES = {
    "deployment_frequency_per_week": ("loopstack_loop_deployment_frequency", "Promotions per week over the model's current timeline (model time; unset under one day)."),
    "lead_time_s": ("loopstack_loop_lead_time_seconds", "Mean time from a fired trigger to the promotion of its version."),
    "change_failure_rate": ("loopstack_loop_change_failure_rate", "Rolled-back rollouts / finished rollouts."),
    "time_to_recover_s": ("loopstack_loop_time_to_recover_seconds", "Mean time from a detected degradation to the next promotion."),
    "retraining_cadence_s": ("loopstack_loop_retraining_cadence_seconds", "Mean time between retraining starts."),
}  # fmt: skip


class LoopMetrics:
    """Counters follow applied decisions; gauges are the model-ops metrics of the history."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.decisions = Counter(
            "loopstack_loop_decisions", "Loop decisions by kind.", ["model", "decision"],
            registry=self.registry,
        )  # fmt: skip
        self.retrainings = Counter(
            "loopstack_loop_retrainings", "Finished retraining runs by status.", ["model", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.rollbacks = Counter(
            "loopstack_loop_rollbacks",
            "Challengers rolled back.",
            ["model"],
            registry=self.registry,
        )
        self.failing = Gauge(
            "loopstack_loop_model_failing",
            "1 while the controller cannot advance the model (broken spec, failing tick).",
            ["model"],
            registry=self.registry,
        )
        self.gauges = {
            key: Gauge(name, text, ["model"], registry=self.registry)
            for key, (name, text) in _GAUGES.items()
        }

    def decided(self, data: dict[str, Any]) -> None:
        """Count one applied decision."""
        model, kind = data["model"], data["kind"]
        self.decisions.labels(model, kind).inc()
        if kind == "pipeline_finished":
            self.retrainings.labels(model, data.get("evidence", {}).get("status", "unknown")).inc()
        elif kind == "rolled_back":
            self.rollbacks.labels(model).inc()

    def set_ops(self, model: str, ops: dict[str, Any]) -> None:
        """Export the model-ops metrics of one model (unknown ones are unset: a value of an
        earlier window, e.g. before a replay rewound the model's clock, is not kept)."""
        for key, gauge in self.gauges.items():
            if ops.get(key) is not None:
                gauge.labels(model).set(ops[key])
            else:
                with contextlib.suppress(KeyError):  # never set
                    gauge.remove(model)
