"""REST inference routes (KServe v1, OIP v2) and error answers, ahead of KServe's own routes.

KServe's v2 route validates the body with pydantic (FastAPI answers 422 with its own format)
and turns unexpected decode errors into 500s; these routes decode the raw bytes themselves, so
every caller mistake is a 400 `{"error": reason}`, and each failure is a logged prediction.
The model and version a route names are resolved first: an unknown one is a 404 whatever the
body holds, sent before it is read. A body is read only up to `serving.limits.max_body_bytes`
(413 beyond it, on every route: `limits.BodyLimit` holds KServe's own routes to it too).
Server readiness and metadata answer from the served splits (`OIPStatus`), not KServe's (always
ready, and listing a repository extension Loopstack does not serve).
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from loopstack.core.errors import LoopstackError
from loopstack.core.pii import mask_text
from loopstack.serving.codec import decode_v1, decode_v2, encode_v1, encode_v2
from loopstack.serving.errors import BodyTooLarge, ModelNotReady
from loopstack.serving.explain import EXPLAIN
from loopstack.serving.ingest import INGEST_PATH
from loopstack.serving.limits import BodyLimit, short
from loopstack.serving.metadata import OIPStatus
from loopstack.serving.runtime import ScoreRequest, ServingRuntime, correlation_from, status_of

__all__ = ["VERSION_HEADER", "add_inference_routes", "error_response"]

_JSON = "application/json"
VERSION_HEADER = "loopstack-model-version"
"""The version that produced a REST answer (also in its body), readable without decoding it."""


def error_response(exc: BaseException) -> Response:
    """`{"error": reason}` with the error's status (and `Retry-After` when not ready)."""
    status = status_of(exc)
    message = (
        exc.message if isinstance(exc, LoopstackError) else f"internal error: {type(exc).__name__}"
    )
    headers = {"Retry-After": str(ModelNotReady.retry_after_s)} if status == 503 else None
    body = orjson.dumps({"error": short(message)})
    return Response(body, status, headers=headers, media_type=_JSON)


_READS_OWN_BODY = re.compile(
    rf"^(/v1/models/[^/]+:predict|/v2/models/[^/]+(/versions/[^/]+)?/infer|{INGEST_PATH})$"
)


def _reads_own_body(path: str) -> bool:
    """Routes that read their body through `Limits.read_body` (and log a refusal themselves)."""
    return _READS_OWN_BODY.match(path) is not None


def _snippet(body: bytes) -> str:
    return body[:1024].decode("utf-8", errors="replace")


class _Routes:
    """Handlers bound to one runtime."""

    def __init__(self, runtime: ServingRuntime, status: OIPStatus) -> None:
        self.runtime = runtime
        self.status = status

    def _unknown(self, model: str, version: str | None = None) -> Exception | None:
        """Why the named model or version cannot answer (None when it can)."""
        try:
            self.status.resolve(model, version)
        except Exception as exc:
            return exc
        return None

    async def _failed_decode(
        self,
        model: str,
        protocol: str,
        body: bytes,
        headers: Any,
        exc: Exception,
        started: float,
        at: float,
    ) -> Response:
        correlation, traceparent = correlation_from(headers)
        failed = ScoreRequest(
            model[:128],
            {"_body": [mask_text(_snippet(body), self.runtime.sensitive.of(model))]},
            1,
            protocol,
            correlation_id=correlation,
            traceparent=traceparent,
        )
        await self.runtime.log_failure(failed, exc, started, at)
        return error_response(exc)

    async def _body(
        self,
        model: str,
        version: str | None,
        protocol: str,
        request: Request,
        started: float,
        at: float,
    ) -> bytes | Response:
        """The body, once the model and version are known to answer (else the refusal, sent
        without reading it), read only up to `serving.limits.max_body_bytes` (else a 413)."""
        refused = self._unknown(model, version)
        if refused is None:
            try:
                return await self.runtime.limits.read_body(request)
            except BodyTooLarge as exc:
                refused = exc
        return await self._failed_decode(
            model, protocol, b"", request.headers, refused, started, at
        )

    async def v1_predict(self, model_name: str, request: Request) -> Response:
        """KServe v1 predict."""
        started, at = time.perf_counter(), time.time()
        body = await self._body(model_name, None, "v1", request, started, at)
        if isinstance(body, Response):
            return body
        try:
            score = decode_v1(body, model_name, self.runtime.limits)
        except Exception as exc:
            return await self._failed_decode(
                model_name, "v1", body, request.headers, exc, started, at
            )
        explain = request.query_params.get(EXPLAIN)
        if explain is not None:  # `?explain=true`; the runtime validates it like a parameter
            score.parameters[EXPLAIN] = explain
        score.correlation_id, score.traceparent = correlation_from(request.headers)
        try:
            result = await self.runtime.score(score)
        except Exception as exc:  # recorded by the runtime
            return error_response(exc)
        return Response(
            orjson.dumps(encode_v1(result)),
            headers={VERSION_HEADER: result.version},
            media_type=_JSON,
        )

    async def v2_infer(
        self, model_name: str, request: Request, model_version: str | None = None
    ) -> Response:
        """OIP v2 infer (JSON or binary tensors)."""
        started, at = time.perf_counter(), time.time()
        body = await self._body(model_name, model_version, "v2-rest", request, started, at)
        if isinstance(body, Response):
            return body
        headers = request.headers
        try:
            decoded = decode_v2(
                body,
                {k.lower(): v for k, v in headers.items()},
                model_name,
                model_version,
                self.runtime.limits,
            )
        except Exception as exc:
            return await self._failed_decode(model_name, "v2-rest", body, headers, exc, started, at)
        score = decoded.score
        score.correlation_id, score.traceparent = correlation_from(headers)
        try:
            result = await self.runtime.score(score)
            payload, extra = encode_v2(result, decoded)
        except Exception as exc:
            return error_response(exc)
        content_type = "application/octet-stream" if extra else _JSON
        answer_headers = {**extra, VERSION_HEADER: result.version}
        return Response(payload, headers=answer_headers, media_type=content_type)

    async def v2_infer_version(
        self, model_name: str, model_version: str, request: Request
    ) -> Response:
        """OIP v2 infer on a pinned version (champion or challenger of the split)."""
        return await self.v2_infer(model_name, request, model_version)

    async def v2_metadata(self, model_name: str, model_version: str | None = None) -> Response:
        """OIP v2 model metadata: the tensors of the champion, or of a served version."""
        try:
            body = self.status.model_metadata(model_name, model_version)
        except Exception as exc:
            return error_response(exc)
        return Response(orjson.dumps(body), media_type=_JSON)

    async def v2_ready(self, model_name: str, model_version: str | None = None) -> Response:
        """OIP v2 model readiness (of a served version, when one is named); 503 with the reason
        while it (or, unnamed, any version its traffic record names) is loading or failed."""
        try:
            self.status.check_ready(model_name, model_version)
        except Exception as exc:
            return error_response(exc)
        return Response(orjson.dumps({"name": model_name, "ready": True}), media_type=_JSON)

    async def server_ready(self) -> Response:
        """OIP v2 server readiness: 503 with the reason until every deployed version answers."""
        reason = self.status.server_not_ready()
        if reason is None:
            return Response(orjson.dumps({"ready": True}), media_type=_JSON)
        return Response(orjson.dumps({"ready": False, "error": reason}), 503, media_type=_JSON)

    async def server_metadata(self) -> Response:
        """OIP v2 server metadata: name, version and the extensions that answer."""
        return Response(orjson.dumps(self.status.server_metadata()), media_type=_JSON)


def add_inference_routes(app: FastAPI, runtime: ServingRuntime, status: OIPStatus) -> None:
    """Add the inference routes; call before KServe registers its own (first match wins)."""
    routes = _Routes(runtime, status)
    app.add_middleware(BodyLimit, limits=runtime.limits, exempt=_reads_own_body)
    app.add_api_route(
        "/v1/models/{model_name}:predict", routes.v1_predict, methods=["POST"], response_model=None
    )
    app.add_api_route(
        "/v2/models/{model_name}/infer", routes.v2_infer, methods=["POST"], response_model=None
    )
    app.add_api_route(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        routes.v2_infer_version,
        methods=["POST"],
        response_model=None,
    )
    # KServe answers 501 to a named version; these know the split's versions.
    for path, handler in (
        ("/v2", routes.server_metadata),
        ("/v2/health/ready", routes.server_ready),
        ("/v2/models/{model_name}", routes.v2_metadata),
        ("/v2/models/{model_name}/versions/{model_version}", routes.v2_metadata),
        ("/v2/models/{model_name}/ready", routes.v2_ready),
        ("/v2/models/{model_name}/versions/{model_version}/ready", routes.v2_ready),
    ):
        app.add_api_route(path, handler, methods=["GET"], response_model=None)
