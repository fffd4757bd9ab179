"""What a served request leaves behind: the `prediction.v1` data of each row, masked.

Shared by the caller's answer and the shadow's (both cite the same request facts); sensitive
fields of the model spec (`sensitive`, from `core.pii.SensitiveFields`) are masked before
anything leaves the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopstack.core.events.topics import PREDICTIONS
from loopstack.core.pii import mask_values
from loopstack.serving.eventsink import EventSink, Receipt, iso_time
from loopstack.serving.features import FeatureLookup, FeatureRows
from loopstack.serving.limits import EVENT_ITEMS, bounded_inputs, cut_row
from loopstack.serving.schema import Columns

if TYPE_CHECKING:
    from loopstack.serving.runtime import ScoreRequest

__all__ = ["EventContext", "safe_inputs"]


def safe_inputs(req: ScoreRequest, sensitive: frozenset[str], chars: int = 256) -> dict[str, Any]:
    """What the caller sent, for a failure event: bounded (`limits.bounded_inputs`: text cut to
    `chars`, bytes as text, a capped number of fields and values): an error must not log
    megabytes, whatever was refused."""
    if req.rows == 1:
        out = {
            k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in req.columns.items()
        }
    else:
        out = {k: v[:EVENT_ITEMS] if isinstance(v, list) else v for k, v in req.columns.items()}
    if req.parameters:
        out["_parameters"] = req.parameters
    # bounded first: masking walks what it is given, and a value may be nested 1,000 deep
    kept: dict[str, Any] = mask_values(bounded_inputs(out, chars), sensitive)
    return kept


@dataclass
class EventContext:
    """Request facts shared by the events of one request (champion and shadow alike)."""

    req: ScoreRequest
    lookup: FeatureLookup | None
    keys: list[Any] | None
    rows: FeatureRows | None
    at: float
    sensitive: frozenset[str] = frozenset()
    chars: int = 256
    """Characters of a text value kept in the events (`serving.limits.event_string_chars`)."""

    def input_rows(self, checked: Columns) -> list[dict[str, Any]]:
        """The model's input rows (checked columns) as logged, sensitive fields masked."""
        names = list(checked)
        rows = zip(*checked.values(), strict=True)
        chars = self.chars
        return [
            cut_row(mask_values(dict(zip(names, row, strict=True)), self.sensitive), chars)
            for row in rows
        ]

    def data(
        self,
        pid: str,
        version: str,
        route: str,
        inputs: dict[str, Any],
        row: int | None,
        seconds: float,
    ) -> dict[str, Any]:
        """The common `prediction.v1` fields of one row."""
        data: dict[str, Any] = {
            "prediction_id": pid,
            "model": (self.req.model or "unknown")[:128],
            "version": version,
            "route": route,
            "protocol": self.req.protocol,
            "inputs": inputs,
            "latency_ms": round(seconds * 1000, 3),
            "request_time": iso_time(self.at),
        }
        if row is not None and self.rows is not None and self.lookup is not None:
            data["features"] = {
                "values": mask_values(self.rows.values[row], self.sensitive),
                "timestamps": {k: v for k, v in self.rows.timestamps[row].items() if v},
                "feature_service": self.rows.feature_service,
            }
            if self.rows.missing and self.rows.missing[row]:  # stale or absent, passed as NaN
                data["features"]["missing"] = self.rows.missing[row]
        if row is not None and self.keys is not None and self.lookup is not None:
            data["entity_key"] = {self.lookup.join_key: self.keys[row]}
        if self.req.request_id:
            data["request_id"] = self.req.request_id[:128]
        return data

    def emit(
        self, sink: EventSink, pid: str, data: dict[str, Any], receipt: Receipt | None = None
    ) -> None:
        """Queue the event (never blocks), or hold it in the answer's `receipt`."""
        sink.emit(
            PREDICTIONS,
            "prediction.v1",
            data,
            event_id=pid,
            subject=(self.req.model or "unknown")[:128],
            at=self.at,
            correlationid=self.req.correlation_id,
            traceparent=self.req.traceparent,
            receipt=receipt,
        )
