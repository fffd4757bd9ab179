"""`drift.v1` events of one reported window: one per kind (feature, prediction, outlier).

Event ids derive from the window (model, version, window number) and the kind, so a window
published again after a crash between the publish and the commit carries the same ids, which
consumers apply once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopstack.core.events import Event
from loopstack.core.modelspec import DriftSpec
from loopstack.monitoring.drift.verdict import WindowVerdict
from loopstack.monitoring.drift.windows import to_iso
from loopstack.monitoring.drift_report import DriftReport

__all__ = [
    "OUTLIER_RATIO",
    "WindowFacts",
    "drift_events",
    "event_id",
    "outliers_drifted",
    "review_events",
]

SOURCE = "loopstack/drift"

OUTLIER_RATIO = 3.0
"""Outlier kind is `drifted` when this many times the reference's share of outliers
(1 - `outlier_quantile`) is over the threshold in the window."""


@dataclass(frozen=True)
class WindowFacts:
    """Which window a report is about."""

    model: str
    version: str
    window_no: int
    start: datetime
    end: datetime
    sample_size: int


def event_id(facts: WindowFacts, kind: str) -> str:
    """The deterministic id of a window's event of one kind."""
    name = f"loopstack:drift:{facts.model}:{facts.version}:{facts.window_no}:{kind}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def outliers_drifted(fraction: float, spec: DriftSpec) -> bool:
    """Whether a window has clearly more outliers than the reference (see `OUTLIER_RATIO`)."""
    return fraction >= OUTLIER_RATIO * (1 - spec.outlier_quantile)


def _event(facts: WindowFacts, kind: str, data: dict[str, Any]) -> Event:
    base: dict[str, Any] = {
        "model": facts.model,
        "version": facts.version,
        "window_no": facts.window_no,
        "window_start": to_iso(facts.start),
        "window_end": to_iso(facts.end),
        "sample_size": facts.sample_size,
        "kind": kind,
    }
    event = Event.create("drift.v1", {**base, **data}, source=SOURCE, subject=facts.model)
    return event.with_changes(id=event_id(facts, kind))


def drift_events(
    facts: WindowFacts,
    spec: DriftSpec,
    report: DriftReport | None,
    verdict: WindowVerdict | None,
) -> list[Event]:
    """The window's events; one `not_enough_data` event when there is no report."""
    guard = {"min_statistic": spec.min_statistic, "min_cramers_v": spec.min_cramers_v}
    if report is None or verdict is None or report.status == "not_enough_data":
        return [_event(facts, "feature", {"status": "not_enough_data", "drifted": False})]
    feature: dict[str, Any] = {
        "status": "ok",
        "drifted": verdict.drifted,
        "method": "TabularDrift",
        "features": [f.to_json() for f in verdict.features],
        **guard,
    }
    if report.threshold is not None:
        feature["threshold"] = report.threshold
    events = [_event(facts, "feature", feature)]
    if verdict.prediction is not None:
        p = verdict.prediction
        data = {
            "status": "ok",
            "drifted": p.drifted,
            "method": "KSDrift",
            "features": [p.to_json()],
        }
        if p.threshold is not None:
            data["threshold"] = p.threshold
        events.append(_event(facts, "prediction", {**data, **guard}))
    out = report.outliers
    if out is not None and out.mean is not None and out.max is not None:
        scores = {
            "count": report.n_rows,
            "mean": out.mean,
            "max": out.max,
            "threshold": out.threshold,
            "outlier_fraction": out.fraction_over_threshold,
        }
        drifted = outliers_drifted(out.fraction_over_threshold, spec)
        data = {"status": "ok", "drifted": drifted, "method": "IForest", "outlier_scores": scores}
        events.append(_event(facts, "outlier", data))
    return events


def review_events(
    facts: WindowFacts,
    report: DriftReport | None,
    prediction_ids: list[str],
    flagged_at: datetime,
) -> list[Event]:
    """`review.v1` for each window row the outlier detector flagged (`prediction_ids`: the
    kept rows' ids, in the order the detector scored them); ids derive from the window."""
    out = report.outliers if report is not None else None
    if out is None or len(out.flags) != len(prediction_ids):
        return []
    flagged = sorted({pid for pid, flag in zip(prediction_ids, out.flags, strict=True) if flag})
    return [
        Event.create(
            "review.v1",
            {
                "prediction_id": pid,
                "model": facts.model,
                "version": facts.version,
                "reasons": ["outlier"],
                "window_no": facts.window_no,
                "threshold": out.threshold,
                "flagged_at": to_iso(flagged_at),
            },
            source=SOURCE,
            subject=facts.model,
            partitionkey=facts.model,
        ).with_changes(id=event_id(facts, f"review:{pid}"))
        for pid in flagged
    ]
