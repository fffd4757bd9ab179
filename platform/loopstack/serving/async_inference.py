"""Asynchronous inference: `inference.request.v1` events in, `inference.result.v1` events out.

A consumer-group member scores each request through the same `ServingRuntime` as HTTP (same
split, features, logging); failures become result events with status `error`. The result's
event id derives from the request's, so a redelivered request yields the same result id and
consumers that already applied it skip it.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from loopstack.core.events.envelope import Event
from loopstack.core.events.topics import INFERENCE_REQUESTS, INFERENCE_RESULTS
from loopstack.core.settings import Settings
from loopstack.serving.eventsink import EventSink
from loopstack.serving.runtime import ScoreRequest, ServingRuntime, status_of

__all__ = ["AsyncInference", "GROUP", "start_consumer"]

GROUP = "serving-async"
_NAMESPACE = uuid.UUID("6f1c4c53-2f7e-4d5e-9a53-3f1f4c0b9a11")


def _columns(inputs: dict[str, Any]) -> tuple[dict[str, list[Any]], int]:
    """`{field: value}` is one row; `{field: [values]}` is a batch (all lists, same length)."""
    if inputs and all(isinstance(v, list) for v in inputs.values()):
        lengths = {len(v) for v in inputs.values()}
        return {k: list(v) for k, v in inputs.items()}, lengths.pop() if len(lengths) == 1 else -1
    return {k: [v] for k, v in inputs.items()}, 1


class AsyncInference:
    """The handler of `inference.request.v1` events."""

    def __init__(self, runtime: ServingRuntime, sink: EventSink) -> None:
        self.runtime = runtime
        self.sink = sink

    def handle(self, event: Event, _conn: Any = None) -> None:
        """Score one request and emit its result (never raises for a bad request)."""
        data = event.data
        columns, rows = _columns(data["inputs"])
        request = ScoreRequest(
            data["model"],
            columns,
            rows,
            "async",
            parameters=dict(data.get("parameters") or {}),
            version=data.get("version"),
            correlation_id=data["correlation_id"],
            traceparent=event.traceparent,
            request_id=event.id,
        )
        result: dict[str, Any] = {"correlation_id": data["correlation_id"], "model": data["model"]}
        try:
            if rows < 0:
                from loopstack.serving.errors import BadRequest

                raise BadRequest("batch inputs must all be lists of one length")
            scored = self.runtime.score_sync(request)
        except Exception as exc:
            result.update(
                status="error", error=f"{status_of(exc)} {type(exc).__name__}: {exc}"[:4000]
            )
        else:
            outputs: dict[str, Any] = {
                "predictions": scored.predictions,
                "prediction_ids": scored.prediction_ids,
                "route": scored.route,
            }
            if scored.probabilities is not None:
                outputs.update(probabilities=scored.probabilities, classes=scored.classes)
            if scored.explanations is not None:
                outputs["explanations"] = scored.explanations
            if scored.needs_review is not None:
                outputs["needs_review"] = scored.needs_review
            result.update(status="ok", version=scored.version, outputs=outputs)
        # Durable before the request's offset is committed (`settle`), or a kill loses it.
        receipt = self.sink.receipt()
        self.sink.emit(
            data.get("reply_to") or INFERENCE_RESULTS,
            "inference.result.v1",
            result,
            event_id=str(uuid.uuid5(_NAMESPACE, event.id)),
            subject=data["model"],
            at=event.time.timestamp(),
            correlationid=data["correlation_id"],
            traceparent=event.traceparent,
            receipt=receipt,
        )
        self.sink.settle(receipt)  # refused: raise, so the consumer retries the request


def start_consumer(
    settings: Settings, event_log: Any, runtime: ServingRuntime, sink: EventSink
) -> threading.Event:
    """Run the consumer on a daemon thread; set the returned event to stop it."""
    from loopstack.core.events.consumer import ConsumerRunner
    from loopstack.core.events.store import ConsumerStore

    store = ConsumerStore(f"sqlite:///{settings.state_path / 'serving' / 'async-consumer.db'}")
    handler = AsyncInference(runtime, sink)
    runner = ConsumerRunner.from_settings(
        settings.events,
        event_log,
        store,
        group=GROUP,
        topics=[INFERENCE_REQUESTS],
        handler=handler.handle,
    )
    stop = threading.Event()
    threading.Thread(target=runner.run, args=(stop,), name="async-inference", daemon=True).start()
    return stop
