"""Ingest KServe InferenceService logger CloudEvents: one `prediction.v1` per request/response pair.

The KServe logger (`spec.predictor.logger`, mode `all`) POSTs each request and each response as
binary-mode CloudEvents (`ce-type` `org.kubeflow.serving.inference.request` / `.response`,
sharing `ce-id`) to `POST /loopstack/events/kserve` of the inference server. Halves wait up to
`pair_timeout_s` for each other; a request whose response never comes is logged as an error,
a lone response as ok without inputs. What waits is bounded: each half is kept as its event
will hold it (`limits.bounded`: text cut, at most 100 values per list, a request's inputs at
most `limits.EVENT_INPUT_BYTES`), and at most `max_pending` halves wait (past it the oldest is
logged unpaired at once). The model's sensitive fields are masked. When the response carries a Loopstack prediction id, the
event reuses it, so a prediction the runtime logged itself is not counted twice by consumers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from loopstack.core.events.topics import PREDICTIONS
from loopstack.core.pii import SensitiveFields, mask_values
from loopstack.serving.errors import BadRequest
from loopstack.serving.eventsink import EventSink, iso_time
from loopstack.serving.limits import bounded, bounded_inputs

__all__ = ["INGEST_PATH", "LoggerIngest", "REQUEST_TYPE", "RESPONSE_TYPE"]

INGEST_PATH = "/loopstack/events/kserve"
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


@dataclass
class _Half:
    body: Any
    headers: dict[str, str]
    at: float
    arrived: float


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _single(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values


def _inputs(body: Any) -> tuple[dict[str, Any], str]:
    """Inputs as logged, and the protocol the body speaks."""
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        instances = body["instances"]
        if len(instances) == 1 and isinstance(instances[0], dict):
            return dict(instances[0]), "v1"
        return {"instances": instances}, "v1"
    if isinstance(body, dict) and isinstance(body.get("inputs"), list):
        columns = {
            t["name"]: _single(t.get("data", []))
            for t in body["inputs"]
            if isinstance(t, dict) and isinstance(t.get("name"), str)
        }
        return columns, "v2-rest"
    return {"body": body}, "v1"


def _outputs(body: Any) -> tuple[dict[str, Any], str | None, str | None]:
    """Outputs, version and Loopstack prediction id of a logged response."""
    if not isinstance(body, dict):
        return {"prediction": body}, None, None
    version = body.get("model_version")
    params: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
    pid = params.get("prediction_id") or (body.get("id") if "prediction_ids" in body else None)
    if isinstance(body.get("predictions"), list):
        outputs: dict[str, Any] = {"prediction": _single(body["predictions"])}
        return outputs, version, pid
    tensors = [t for t in body.get("outputs") or [] if isinstance(t, dict)]
    chosen = next(
        (t for t in tensors if t.get("name") == "prediction"), tensors[0] if tensors else None
    )
    return {"prediction": _single(chosen.get("data", [])) if chosen else None}, version, pid


class LoggerIngest:
    """Pairs logger CloudEvents by `ce-id` and emits one prediction event per pair."""

    def __init__(
        self,
        sink: EventSink,
        pair_timeout_s: float = 5.0,
        sensitive: SensitiveFields | None = None,
        chars: int = 256,
        max_pending: int = 1_000,
    ) -> None:
        self.sink = sink
        self.chars = chars
        self.max_pending = max_pending
        self.sensitive = sensitive or SensitiveFields(None)
        self.pair_timeout_s = pair_timeout_s
        self._halves: dict[tuple[str, str], _Half] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sweep_loop, name="ingest-sweeper", daemon=True)
        self._thread.start()

    def accept(self, headers: Mapping[str, str], body: bytes) -> str:
        """Take one binary-mode CloudEvent; returns `paired` or `waiting`.

        Raises:
            BadRequest: not a KServe logger event (missing ce-* headers, unknown type, bad JSON).
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        kind, event_id = lowered.get("ce-type"), lowered.get("ce-id")
        if kind not in (REQUEST_TYPE, RESPONSE_TYPE):
            raise BadRequest(f"ce-type must be {REQUEST_TYPE} or {RESPONSE_TYPE}, got {kind!r}")
        if not event_id or not lowered.get("ce-specversion") or not lowered.get("ce-source"):
            raise BadRequest("a binary-mode CloudEvent needs ce-id, ce-source and ce-specversion")
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the logged payload is not JSON: {exc}") from None
        now = time.monotonic()
        # Kept as the event will hold it: a waiting half costs no more than its event.
        payload = (
            bounded_inputs(payload, self.chars)
            if kind == REQUEST_TYPE
            else bounded(payload, self.chars)
        )
        half = _Half(payload, lowered, _parse_time(lowered.get("ce-time")) or time.time(), now)
        namespace = (
            lowered.get("ce-inferenceservicename", "") + "/" + lowered.get("ce-namespace", "")
        )
        key = (namespace, event_id)
        oldest: tuple[tuple[str, str], _Half] | None = None
        with self._lock:
            other = self._halves.pop(key, None)
            if other is None or other.headers.get("ce-type") == kind:
                self._halves[key] = half
                if len(self._halves) > self.max_pending:  # dicts keep arrival order
                    first = next(iter(self._halves))
                    oldest = first, self._halves.pop(first)
        if oldest is not None:
            self._emit_unpaired(oldest[0][1], oldest[1])
        if other is None or other.headers.get("ce-type") == kind:
            return "waiting"
        request, response = (half, other) if kind == REQUEST_TYPE else (other, half)
        self._emit(event_id, request, response)
        return "paired"

    def pending(self) -> int:
        """Halves waiting for their other half."""
        with self._lock:
            return len(self._halves)

    def sweep(self, now: float | None = None) -> int:
        """Emit halves that waited longer than the timeout; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            expired = [k for k, h in self._halves.items() if now - h.arrived >= self.pair_timeout_s]
            halves = [(k, self._halves.pop(k)) for k in expired]
        for (_, event_id), half in halves:
            self._emit_unpaired(event_id, half)
        return len(halves)

    def _emit_unpaired(self, event_id: str, half: _Half) -> None:
        if half.headers.get("ce-type") == REQUEST_TYPE:
            self._emit(event_id, half, None)
        else:
            self._emit(event_id, None, half)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(min(0.25, self.pair_timeout_s / 4)):
            self.sweep()

    def close(self) -> None:
        """Emit what is still waiting and stop the sweeper."""
        self._stop.set()
        self.sweep(now=float("inf"))

    def _emit(self, event_id: str, request: _Half | None, response: _Half | None) -> None:
        headers = (request or response).headers  # type: ignore[union-attr]
        model = headers.get("ce-inferenceservicename") or headers.get("ce-source", "unknown")
        inputs, protocol = _inputs(request.body) if request else ({}, "v1")
        inputs = mask_values(inputs, self.sensitive.of(model))
        data: dict[str, Any] = {
            "model": model[:128],
            "route": "champion",
            "protocol": protocol,
            "inputs": inputs,
            "request_time": iso_time((request or response).at),  # type: ignore[union-attr]
            "source_id": event_id[:256],
        }
        pid = event_id
        version = headers.get("ce-modelversion")
        if response is not None:
            outputs, answered, loopstack_id = _outputs(response.body)
            version = answered or version
            pid = loopstack_id or event_id
            data.update(status="ok", outputs=outputs)
            if protocol == "v1" and not request:
                data["protocol"] = (
                    "v2-rest"
                    if isinstance(response.body, dict) and "outputs" in response.body
                    else "v1"
                )
        else:
            data.update(
                status="error", error=f"no response was logged within {self.pair_timeout_s:g}s"
            )
        start = request.at if request else None
        end = response.at if response else None
        data["latency_ms"] = max(0.0, (end - start) * 1000) if start and end else 0.0
        data["prediction_id"] = str(pid)[:128]
        data["version"] = str(version or "unknown")[:64]
        self.sink.emit(
            PREDICTIONS,
            "prediction.v1",
            data,
            event_id=data["prediction_id"],
            subject=data["model"],
            at=(request or response).at,  # type: ignore[union-attr]
            correlationid=headers.get("x-request-id") or event_id,
            traceparent=headers.get("traceparent"),
        )
