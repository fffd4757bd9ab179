"""`ServingRuntime`: the transport-free core every protocol calls (REST v1/v2, gRPC, async).

One `score` does: route by the model's traffic split, fetch online features for entity keys,
validate against the chosen version's signature, predict (with the requests queued meanwhile
for the same version: `AdaptiveBatcher`), and record the answer (metrics and a
`prediction.v1` event per row; with `serving.durable_answers` the answer leaves only once those
events are in the process's outbox file, group-committed with concurrent answers, so a killed
server never forgets what it answered). A shadow challenger scores the same rows on its own
thread; its answer is only logged, and its events never hold up the caller's answer. A request
that asks for explanations (`explain`) is finished on a worker thread, the SHAP run being far
longer than a prediction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from loopstack.core.errors import LoopstackError
from loopstack.core.ids import uuid4
from loopstack.core.pii import SensitiveFields, scrub
from loopstack.core.settings import InputLimits
from loopstack.serving.batching import AdaptiveBatcher
from loopstack.serving.errors import (
    AnswerNotDurable,
    BadRequest,
    ModelNotReady,
    ModelNotServed,
    VersionNotServed,
)
from loopstack.serving.eventsink import EventSink, Receipt
from loopstack.serving.explain import Explainers, explain_requested
from loopstack.serving.features import FeatureLookup, FeatureRows, OnlineFeatureSource
from loopstack.serving.limits import Limits
from loopstack.serving.loader import LoadedVersion, Scores
from loopstack.serving.metrics import ServingMetrics
from loopstack.serving.records import EventContext, safe_inputs
from loopstack.serving.review import ReviewFlags, review_flags
from loopstack.serving.routing import Route, ServedSplit
from loopstack.serving.schema import Columns, Matrix, NullableFields

__all__ = [
    "ScoreRequest",
    "ScoreResult",
    "ScoringFailed",
    "ServingRuntime",
    "correlation_from",
    "status_of",
]

log = logging.getLogger(__name__)
REQUEST_TIME = "request_time"
"""Request parameter a replay sets to the simulated time (only where the server accepts it)."""


class ScoringFailed(LoopstackError):
    """The model raised on valid input: a server-side fault; see the server log and the event."""


def status_of(exc: BaseException) -> int:
    """HTTP status of an exception (500 for anything that is not a Loopstack error)."""
    return exc.http_status if isinstance(exc, LoopstackError) else 500


@dataclass
class ScoreRequest:
    """One inference request, normalised: columns of values plus request-level parameters."""

    model: str
    columns: Columns
    rows: int
    protocol: str
    parameters: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    request_id: str | None = None
    datatypes: dict[str, str] = field(default_factory=dict)
    """Declared v2 tensor datatypes, checked against the signature."""
    matrix: Matrix | None = None
    """Rows sent positionally (an `[N, F]` tensor, v1 list rows): split into `columns` by the
    signature of the version that answers."""
    checked: Collection[str] = ()
    """Columns split from a numeric array, checked already."""
    outputs: list[str] | None = None
    """The v2 outputs the caller asked for (None: all), checked against the answering version."""


@dataclass(frozen=True)
class ScoreResult:
    """What the caller gets back: the answer, who gave it, and the prediction ids to cite."""

    model: str
    version: str
    route: str
    id: str
    prediction_ids: list[str]
    predictions: list[Any]
    probabilities: list[list[float]] | None
    classes: list[Any] | None
    prediction_datatype: str
    explanations: list[dict[str, Any]] | None = None
    """One per row when the request asked for them (`explain`), else None."""
    needs_review: list[bool] | None = None
    """One per row when the model's spec sets `review.min_margin`, else None."""
    missing_features: list[list[str]] | None = None
    """Per row, the features passed as missing (stale or absent, `stale_features: missing`);
    None when every fetched feature was fresh."""


@dataclass
class _Prepared:
    served: ServedSplit
    route: Route
    lookup: FeatureLookup | None
    keys: list[Any] | None
    fetch: bool = True
    """False when the caller sent every feature with the key: nothing is read from the store."""
    nullable: frozenset[str] = frozenset()
    """Inputs whose null or NaN reaches the model as NaN (the spec's `nullable_fields`)."""


def correlation_from(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """Correlation id (x-request-id, else the W3C trace id, else a new id) and the traceparent."""
    traceparent = headers.get("traceparent")
    if traceparent is not None:
        parts = traceparent.split("-")
        if len(parts) != 4 or len(parts[1]) != 32:
            traceparent = None  # malformed: not ours to propagate
    request_id = headers.get("x-request-id")
    if request_id:
        return request_id[:128], traceparent
    if traceparent is not None:
        return traceparent.split("-")[1], traceparent
    return uuid4(), None


def _pinned(served: ServedSplit, model: str, version: str) -> Route:
    """The route to a version the caller named; VersionNotServed if the split has no such one."""
    route = served.pinned(version)
    if route is None:
        raise VersionNotServed(model, version, sorted(served.versions()))
    return route


def _text(key: str, value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise BadRequest(f"entity key {key!r} is not UTF-8 text") from None


def _check_outputs(requested: list[str], version: LoadedVersion) -> None:
    """Refuse an output the answering version does not have, before it scores anything."""
    known = [t["name"] for t in version.output_tensors()]
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise BadRequest(f"unknown output(s) {', '.join(unknown)}; outputs: {', '.join(known)}")


def _ids(base: str, rows: int) -> list[str]:
    return [base] if rows == 1 else [f"{base}-{i}" for i in range(rows)]


class ServingRuntime:
    """Holds the served splits of one server process and scores requests against them."""

    def __init__(
        self,
        sink: EventSink,
        metrics: ServingMetrics,
        features: OnlineFeatureSource | None = None,
        shadow_queue: int = 1000,
        accept_request_time: bool = False,
        explainers: Explainers | None = None,
        sensitive: SensitiveFields | None = None,
        max_batch_rows: int = 256,
        nullable: NullableFields | None = None,
        limits: InputLimits | None = None,
    ) -> None:
        self.sink = sink
        self.limits = Limits(limits)
        self.nullable = nullable or NullableFields(None)
        self.sensitive = sensitive or SensitiveFields(None)
        self.explainers = explainers or Explainers()
        self.accept_request_time = accept_request_time
        self.metrics = metrics
        self.features = features
        self._served: dict[str, ServedSplit] = {}
        self._not_ready: dict[str, str] = {}
        self._shadow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._shadow_pending = 0
        self._shadow_lock = threading.Lock()
        self._shadow_max = shadow_queue
        self.on_model_added: Callable[[str], None] | None = None
        self._batcher = AdaptiveBatcher(self._predict, max_batch_rows, metrics.observe_batch)

    # --- state, changed by the traffic watcher -------------------------------------------
    def models(self) -> list[str]:
        """Every model this server knows (ready or not)."""
        return sorted({*self._served, *self._not_ready})

    def served(self, model: str) -> ServedSplit | None:
        """The ready split of a model."""
        return self._served.get(model)

    def ready(self, model: str) -> bool:
        """Whether the model answers requests."""
        return model in self._served

    def set_split(self, served: ServedSplit) -> None:
        """Serve a loaded split; the swap is one dict assignment, so requests never see half."""
        model = served.split.model
        known = model in self._served or model in self._not_ready
        self._served[model] = served
        self._not_ready.pop(model, None)
        self.metrics.split_revision.labels(model).set(served.split.revision)
        if not known and self.on_model_added is not None:
            self.on_model_added(model)

    def set_not_ready(self, model: str, detail: str) -> None:
        """Mark a model that has no loaded split yet (loading, or its versions failed to load)."""
        known = model in self._served or model in self._not_ready
        if model not in self._served:
            self._not_ready[model] = detail
        if not known and self.on_model_added is not None:
            self.on_model_added(model)

    def warm(self, model: str) -> None:
        """Open the feature store and resolve the model's lookup before it takes traffic."""
        self._quiet_lookup(model)

    def not_ready_detail(self, model: str) -> str | None:
        """Why a known model is not ready, or None."""
        return self._not_ready.get(model)

    def version_of(self, model: str, version: str | None = None) -> LoadedVersion:
        """A served version of a model (the champion by default), for metadata and readiness.

        Raises:
            ModelNotReady, ModelNotServed, VersionNotServed: what the caller should hear.
        """
        served = self._split(model)
        if version is None:
            return served.champion
        return _pinned(served, model, version).version

    def _split(self, model: str) -> ServedSplit:
        served = self._served.get(model)
        if served is None:
            detail = self._not_ready.get(model)
            if detail is not None:
                raise ModelNotReady(model, detail)
            raise ModelNotServed(model, self.models())
        return served

    def signature_version(self, model: str) -> LoadedVersion | None:
        """The champion version (its signature describes the model's tensors)."""
        served = self._served.get(model)
        return served.champion if served else None

    # --- scoring --------------------------------------------------------------------------
    async def score(self, req: ScoreRequest) -> ScoreResult:
        """Score a request on the event loop; the feature store is read on a worker thread.

        With durable answers, returns once the answer's events are in the outbox.

        Raises:
            AnswerNotDurable: the answer's events could not be written (a 503).
        """
        started, at = time.perf_counter(), time.time()
        prepared: _Prepared | None = None
        receipt = self.sink.receipt()
        try:
            at = self._request_time(req, at)
            explain = explain_requested(req.parameters)
            prepared = self._prepare(req)
            rows = None
            if prepared.lookup is not None and prepared.keys is not None and prepared.fetch:
                rows = await asyncio.to_thread(self._fetch, prepared.lookup, prepared.keys, at)
            if explain:  # off the event loop: other requests keep being answered meanwhile
                result = await asyncio.to_thread(
                    self._finish, req, prepared, rows, started, at, True, receipt
                )
            else:
                columns, checked = self._inputs(req, prepared, rows)
                scores = await self._batcher.score(prepared.route.version, checked, req.rows)
                result = self._answer(
                    req, prepared, rows, columns, checked, scores, started, at, receipt=receipt
                )
        except Exception as exc:
            failed = self.record_failure(
                req, exc, started, at, prepared.route if prepared else None
            )
            await self.sink.settled(failed, refuse=False)
            raise
        await self.sink.settled(receipt)  # the answer leaves only once its record is safe
        return result

    def score_sync(self, req: ScoreRequest) -> ScoreResult:
        """Score a request on the calling thread (the asynchronous-inference consumer).

        Raises:
            AnswerNotDurable: with durable answers, the answer's events could not be written.
        """
        started, at = time.perf_counter(), time.time()
        prepared: _Prepared | None = None
        receipt = self.sink.receipt()
        try:
            at = self._request_time(req, at)
            explain = explain_requested(req.parameters)
            prepared = self._prepare(req)
            rows = None
            if prepared.lookup is not None and prepared.keys is not None and prepared.fetch:
                rows = self._fetch(prepared.lookup, prepared.keys, at)
            result = self._finish(req, prepared, rows, started, at, explain, receipt)
        except Exception as exc:
            failed = self.record_failure(
                req, exc, started, at, prepared.route if prepared else None
            )
            with contextlib.suppress(AnswerNotDurable):  # the error answer stands; loss counted
                self.sink.settle(failed)
            raise
        self.sink.settle(receipt)
        return result

    def _request_time(self, req: ScoreRequest, now: float) -> float:
        """The request's time: now, or the `request_time` parameter of a replay."""
        sent = req.parameters.pop(REQUEST_TIME, None)
        if sent is None:
            return now
        if not self.accept_request_time:
            raise BadRequest(
                f"parameter {REQUEST_TIME!r} is accepted only by a server that replays history "
                "(LOOPSTACK_SERVING__ACCEPT_REQUEST_TIME=true)"
            )
        try:
            when = datetime.fromisoformat(str(sent).replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(
                f"parameter {REQUEST_TIME!r} must be an ISO 8601 time, got {sent!r}"
            ) from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()

    def _prepare(self, req: ScoreRequest) -> _Prepared:
        served = self._split(req.model)
        if req.rows < 1:
            raise BadRequest("the request has no rows (instances or tensor values)")
        # Whatever the protocol, before any feature is fetched or value checked one by one.
        self.limits.check(req.columns, req.rows, req.matrix, req.parameters)
        lookup = self.features.lookup(req.model) if self.features is not None else None
        keys = self._entity_keys(req, lookup)
        if req.version:
            route = _pinned(served, req.model, req.version)
        else:
            route = served.choose(keys[0] if keys else None)
        if req.outputs is not None:
            _check_outputs(req.outputs, route.version)
        nullable = self.nullable.of(req.model)
        if req.matrix is not None:
            self._split_matrix(req, route.version, nullable)
        # An app that knows every feature itself may still name the entity (so outcomes and
        # training labels can be tied to it): its values are used as sent.
        sent_all = lookup is not None and all(name in req.columns for name in lookup.names)
        return _Prepared(served, route, lookup, keys, fetch=not sent_all, nullable=nullable)

    @staticmethod
    def _split_matrix(req: ScoreRequest, version: LoadedVersion, nullable: frozenset[str]) -> None:
        """Positional rows as named columns, in the signature order of the answering version."""
        assert req.matrix is not None
        columns, checked = version.schema.split(req.matrix, nullable)
        if req.columns:  # an entity key or a feature beside the matrix
            both = [name for name in columns if name in req.columns]
            if both:
                raise BadRequest(
                    f"field(s) {', '.join(both)} are sent twice: in {req.matrix.name!r} and as "
                    "their own input; send each once"
                )
            req.columns.update(columns)
        else:
            req.columns = columns
        if checked:
            req.checked = columns.keys()
        req.matrix = None

    def _entity_keys(self, req: ScoreRequest, lookup: FeatureLookup | None) -> list[Any] | None:
        if lookup is None:
            return None
        key = lookup.join_key
        if key in req.columns:
            values = req.columns.pop(key)
            if len(values) != req.rows:
                raise BadRequest(
                    f"entity key {key!r} has {len(values)} value(s) for {req.rows} row(s)"
                )
        elif key in req.parameters:
            values = [req.parameters[key]] * req.rows
        else:
            return None
        # gRPC and binary clients send a string key as a BYTES tensor
        values = [_text(key, v) if isinstance(v, bytes) else v for v in values]
        sent = [name for name in lookup.names if name in req.columns]
        if sent and len(sent) < len(lookup.names):
            raise BadRequest(
                f"field(s) {', '.join(sent)} come from the feature store for {key!r}; do not send them "
                "with an entity key, or send every feature of the service with it"
            )
        return [lookup.coerce_key(v) for v in values]

    def _fetch(self, lookup: FeatureLookup, keys: list[Any], at: float) -> FeatureRows:
        assert self.features is not None
        # Judged at the request time (a replay's event time): TTLs are about the data's time.
        return self.features.fetch(lookup, keys, at)

    def _finish(
        self,
        req: ScoreRequest,
        prepared: _Prepared,
        rows: FeatureRows | None,
        started: float,
        at: float,
        explain: bool = False,
        receipt: Receipt | None = None,
    ) -> ScoreResult:
        version = prepared.route.version
        columns, checked = self._inputs(req, prepared, rows)
        frame = version.schema.build(checked)
        scores = self._predict(version, frame)
        explained = frame if explain else None
        return self._answer(
            req, prepared, rows, columns, checked, scores, started, at, explained, receipt
        )

    def _inputs(
        self, req: ScoreRequest, prepared: _Prepared, rows: FeatureRows | None
    ) -> tuple[Columns, Columns]:
        """The request's columns with fetched features, and them checked by the signature."""
        version = prepared.route.version
        columns = req.columns
        nullable = prepared.nullable
        if rows is not None:
            columns = dict(columns)
            fetched = prepared.lookup.names if prepared.lookup else ()
            for name in fetched:
                columns[name] = [row[name] for row in rows.values]
            # what the store lacks is not the caller's mistake: its policy is the feature
            # lookup's (`stale_features`), not a 400 about a field the caller never sent
            nullable = nullable | frozenset(fetched)
            prepared.nullable = nullable
        for name, datatype in req.datatypes.items():
            version.schema.check_datatype(name, datatype)
        return columns, version.schema.check(columns, req.rows, nullable, req.checked)

    @staticmethod
    def _predict(version: LoadedVersion, frame: pd.DataFrame) -> Scores:
        try:
            return version.score(frame)
        except Exception as exc:
            log.exception("%s v%s failed to score", version.model, version.version)
            raise ScoringFailed(
                f"model {version.model!r} v{version.version} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _answer(
        self,
        req: ScoreRequest,
        prepared: _Prepared,
        rows: FeatureRows | None,
        columns: Columns,
        checked: Columns,
        scores: Scores,
        started: float,
        at: float,
        explained: pd.DataFrame | None = None,
        receipt: Receipt | None = None,
    ) -> ScoreResult:
        """The answer, its metrics and events; `explained`: the frame to explain, if asked;
        `receipt`: holds the events until the caller settles it (durable answers)."""
        version = prepared.route.version
        # The latency recorded is the prediction's: the loop compares versions on it, and an
        # explanation's cost would count against whichever version happened to be asked.
        seconds = time.perf_counter() - started
        explanations = None
        sensitive = self.sensitive.of(req.model)
        if explained is not None:
            explanations = self.explainers.explain(version, explained, scores, sensitive)
        base = uuid4()
        ids = _ids(base, req.rows)
        route = prepared.route.route
        self.metrics.observe(req.model, version.version, req.protocol, route, "200", seconds)
        self._observe_values(version, route, scores)
        review = review_flags(prepared.lookup.spec.review if prepared.lookup else None, scores)
        if review is not None:
            flagged = sum(review.needs_review)
            if flagged:
                self.metrics.needs_review.labels(req.model, version.version, route).inc(flagged)
        context = EventContext(
            req, prepared.lookup, prepared.keys, rows, at, sensitive, self.limits.event_string_chars
        )
        inputs = context.input_rows(checked)
        self._emit_ok(
            context,
            version,
            route,
            ids,
            inputs,
            scores,
            seconds,
            None,
            explanations,
            review,
            receipt,
        )
        if prepared.route.shadow is not None:
            self._mirror(context, prepared.route.shadow, columns, ids, inputs, prepared.nullable)
        return ScoreResult(
            model=req.model,
            version=version.version,
            route=route,
            id=base,
            prediction_ids=ids,
            predictions=scores.predictions,
            probabilities=scores.probabilities,
            classes=version.classes,
            prediction_datatype=version.prediction_datatype,
            explanations=explanations,
            needs_review=review.needs_review if review is not None else None,
            missing_features=rows.missing_features() if rows is not None else None,
        )

    def _observe_values(self, version: LoadedVersion, route: str, scores: Scores) -> None:
        if scores.probabilities is not None:
            values = [p[-1] for p in scores.probabilities]
        else:
            values = [v for v in scores.predictions if isinstance(v, int | float)]
        self.metrics.observe_values(version.model, version.version, route, values)

    def _emit_ok(
        self,
        context: EventContext,
        version: LoadedVersion,
        route: str,
        ids: list[str],
        inputs: list[dict[str, Any]],
        scores: Scores,
        seconds: float,
        paired: list[str] | None = None,
        explanations: list[dict[str, Any]] | None = None,
        review: ReviewFlags | None = None,
        receipt: Receipt | None = None,
    ) -> None:
        for i, pid in enumerate(ids):
            outputs: dict[str, Any] = {"prediction": scores.predictions[i]}
            if scores.probabilities is not None and version.classes is not None:
                outputs["probabilities"] = {
                    str(c): p for c, p in zip(version.classes, scores.probabilities[i], strict=True)
                }
            data = context.data(pid, version.version, route, inputs[i], i, seconds)
            data["status"] = "ok"
            data["outputs"] = outputs
            if paired is not None:
                data["paired_prediction_id"] = paired[i]
            if explanations is not None:
                data["explanation"] = explanations[i]
            if review is not None:
                data["review"] = review.event_field(i)
            context.emit(self.sink, pid, data, receipt)

    def record_failure(
        self,
        req: ScoreRequest,
        exc: BaseException,
        started: float,
        at: float,
        route: Route | None = None,
    ) -> Receipt | None:
        """Count a failed request and log it as one `prediction.v1` event with status `error`.

        Returns the event's receipt to settle before answering (durable answers), else None.
        """
        if getattr(exc, "_loopstack_logged", False):
            return None
        with contextlib.suppress(AttributeError):  # a few builtins take no attributes
            exc._loopstack_logged = True  # type: ignore[attr-defined]
        seconds = time.perf_counter() - started
        version = route.version.version if route else self._champion_version(req.model)
        route_name = route.route if route else "champion"
        status = status_of(exc)
        # A name no split knows is the caller's: as a label, each would be a series forever.
        known = req.model in self._served or req.model in self._not_ready
        model_label = req.model if known else "unknown"
        self.metrics.observe(model_label, version, req.protocol, route_name, str(status), seconds)
        pid = uuid4()
        sensitive = self.sensitive.of(req.model)
        context = EventContext(req, None, None, None, at, sensitive, self.limits.event_string_chars)
        inputs = safe_inputs(req, sensitive, self.limits.event_string_chars)
        if req.matrix is not None:  # never split: its values have no names to mask by, so none
            inputs["_matrix"] = {"name": req.matrix.name, "rows": req.rows}
        data = context.data(pid, version, route_name, inputs, None, seconds)
        data["status"] = "error"
        sent = [v for f in sensitive for v in [*req.columns.get(f, []), req.parameters.get(f)]]
        message = f"{status} {type(exc).__name__}: {exc}"
        try:
            data["error"] = scrub(message, sent)[:4000]
        except RecursionError:  # a value nested too deep to print is in no message either
            scalars = [v for v in sent if not isinstance(v, list | dict)]
            data["error"] = scrub(message, scalars)[:4000]
        receipt = self.sink.receipt()
        context.emit(self.sink, pid, data, receipt)
        return receipt

    async def log_failure(
        self, req: ScoreRequest, exc: BaseException, started: float, at: float
    ) -> None:
        """`record_failure` for a transport's own refusals (before `score`): with durable
        answers, returns once the event is in the outbox (its loss is counted, the error
        answer stands)."""
        await self.sink.settled(self.record_failure(req, exc, started, at), refuse=False)

    def _quiet_lookup(self, model: str) -> FeatureLookup | None:
        if self.features is None or not model:
            return None
        try:
            return self.features.lookup(model)
        except Exception:  # a failure event must be logged even if Feast is down
            return None

    def _champion_version(self, model: str) -> str:
        served = self._served.get(model)
        return served.champion.version if served else "unknown"

    # --- shadow -----------------------------------------------------------------------------
    def _mirror(
        self,
        context: EventContext,
        shadow: LoadedVersion,
        columns: Columns,
        paired: list[str],
        inputs: list[dict[str, Any]],
        nullable: frozenset[str],
    ) -> None:
        with self._shadow_lock:
            if self._shadow_pending >= self._shadow_max:
                self.metrics.shadow_dropped.labels(shadow.model).inc()
                return
            self._shadow_pending += 1
        self._shadow.submit(self._run_shadow, context, shadow, columns, paired, inputs, nullable)

    def _run_shadow(
        self,
        context: EventContext,
        shadow: LoadedVersion,
        columns: Columns,
        paired: list[str],
        inputs: list[dict[str, Any]],
        nullable: frozenset[str],
    ) -> None:
        started = time.perf_counter()
        req = context.req
        try:
            scores = shadow.score(shadow.schema.frame(columns, req.rows, nullable))
        except Exception as exc:  # the shadow's failure is logged, never seen by the caller
            seconds = time.perf_counter() - started
            self.metrics.observe(req.model, shadow.version, req.protocol, "shadow", "500", seconds)
            for i, pid in enumerate(_ids(uuid4(), req.rows)):
                data = context.data(pid, shadow.version, "shadow", inputs[i], i, seconds)
                data.update(status="error", error=f"{type(exc).__name__}: {exc}"[:4000])
                data["paired_prediction_id"] = paired[i]
                context.emit(self.sink, pid, data)
            return
        finally:
            with self._shadow_lock:
                self._shadow_pending -= 1
        seconds = time.perf_counter() - started
        self.metrics.observe(req.model, shadow.version, req.protocol, "shadow", "200", seconds)
        self._observe_values(shadow, "shadow", scores)
        ids = _ids(uuid4(), req.rows)
        self._emit_ok(context, shadow, "shadow", ids, inputs, scores, seconds, paired)

    def close(self) -> None:
        """Stop the model and shadow threads (waiting for what they are scoring)."""
        self._batcher.close()
        self._shadow.shutdown(wait=True, cancel_futures=True)
