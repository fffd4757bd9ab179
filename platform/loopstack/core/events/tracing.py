"""W3C trace context on events: carry `traceparent`, continue it in consumers, export via OTLP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from loopstack.core.events.envelope import Event

__all__ = ["batch_span", "configure_tracing", "current_traceparent", "event_span"]

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = "loopstack.events"


def configure_tracing(
    otlp_endpoint: str | None, service_name: str, *, set_global: bool = True
) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/HTTP, or None when no endpoint is configured."""
    if not otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def current_traceparent() -> str | None:
    """The `traceparent` of the current span, or None outside a recorded span."""
    span = trace.get_current_span()
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def event_span(
    event: Event,
    name: str,
    *,
    kind: trace.SpanKind = trace.SpanKind.CONSUMER,
    provider: trace.TracerProvider | None = None,
) -> Iterator[trace.Span]:
    """Start a span as a child of the event's `traceparent` (a root span if it has none)."""
    carrier = {"traceparent": event.traceparent} if event.traceparent else {}
    context = _PROPAGATOR.extract(carrier)
    tracer = trace.get_tracer(_TRACER, tracer_provider=provider)
    attributes = {
        "messaging.message.id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
    }
    if event.subject:
        attributes["cloudevents.event_subject"] = event.subject
    with tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes
    ) as span:
        yield span


@contextmanager
def batch_span(
    events: Sequence[Event],
    name: str,
    *,
    provider: trace.TracerProvider | None = None,
) -> Iterator[trace.Span]:
    """One consumer span for a batch, linked to each event's `traceparent` (OTel messaging's
    batch pattern: a batch has many parents, so they become links rather than one parent)."""
    links = []
    for event in events:
        if event.traceparent:
            context = _PROPAGATOR.extract({"traceparent": event.traceparent})
            span_context = trace.get_current_span(context).get_span_context()
            if span_context.is_valid:
                links.append(trace.Link(span_context, {"messaging.message.id": event.id}))
    tracer = trace.get_tracer(_TRACER, tracer_provider=provider)
    attributes = {"messaging.batch.message_count": len(events)}
    with tracer.start_as_current_span(
        name, kind=trace.SpanKind.CONSUMER, links=links, attributes=attributes
    ) as span:
        yield span
