"""OIP v2 gRPC on KServe's own servicer, bound to the configured host (KServe binds `[::]`).

KServe builds the listen address inside `GRPCServer.start`, so `start` is overridden (and adds
a TLS port instead of a plaintext one when the settings give a certificate); the
per-call "grpc method" log interceptor is left out (events are the record), and Loopstack
errors map to gRPC codes here, in one place. Inference skips KServe's data plane: the request
protobuf is decoded straight into the runtime's columns and the answer built directly
(`codec.decode_grpc` / `encode_grpc`), as lean as the REST routes' JSON path. Readiness and
metadata answer from the served splits (`OIPStatus`, as REST does): versions honoured, an
unknown model or version NOT_FOUND before the request's tensors are read.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

import grpc
from grpc import StatusCode, aio
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer

from loopstack.core.errors import LoopstackError
from loopstack.core.tls import ServerTLS
from loopstack.serving.codec import decode_grpc, encode_grpc
from loopstack.serving.errors import ModelNotReady
from loopstack.serving.limits import short
from loopstack.serving.metadata import OIPStatus
from loopstack.serving.runtime import ScoreRequest, ServingRuntime, correlation_from

__all__ = ["LoopbackGRPCServer"]

_CODES = {
    400: StatusCode.INVALID_ARGUMENT,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    413: StatusCode.RESOURCE_EXHAUSTED,
    409: StatusCode.FAILED_PRECONDITION,
    422: StatusCode.FAILED_PRECONDITION,  # well formed, but e.g. its features are stale
    503: StatusCode.UNAVAILABLE,
}
_Handler = Callable[[Any, Any, Any], Awaitable[Any]]


_KSERVE_STATUS = ExceptionToStatusInterceptor()
"""KServe's own mapping, for the KServe errors of the health and metadata RPCs."""


def _status(method: _Handler) -> _Handler:
    """Map what an RPC raises to a gRPC status: Loopstack errors by their HTTP category (never
    INTERNAL for a 4xx), KServe's as KServe maps them. A decorator, not an interceptor: nothing
    wraps each call's handler, and the map still lives here, in one place."""

    @functools.wraps(method)
    async def call(self: _Servicer, request: Any, context: Any) -> Any:
        try:
            return await method(self, request, context)
        except aio.AbortError:
            raise
        except Exception as exc:
            model = getattr(request, "model_name", "") or getattr(request, "name", "")
            error = _as_loopstack(exc, model, self._runtime)
            if isinstance(error, LoopstackError):
                await context.abort(
                    _CODES.get(error.http_status, StatusCode.INTERNAL), short(error.message)
                )
            await _KSERVE_STATUS.handle_exception(error, request, context, method.__name__)

    return call


class _Servicer(InferenceServicer):
    """KServe's servicer for liveness and the repository; health and metadata answer from
    `OIPStatus`; `ModelInfer` reads the protobuf straight into the runtime and builds the
    answer itself, as the REST routes do with JSON (no KServe `InferRequest`/`InferResponse`,
    no numpy round trip, no data plane)."""

    def __init__(self, data_plane: Any, extension: Any, status: OIPStatus) -> None:
        super().__init__(data_plane, extension)
        self._oip = status
        self._runtime: ServingRuntime = status.runtime

    ServerLive = _status(InferenceServicer.ServerLive)
    RepositoryModelLoad = _status(InferenceServicer.RepositoryModelLoad)
    RepositoryModelUnload = _status(InferenceServicer.RepositoryModelUnload)

    @_status
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        """False until every deployed version answers (REST `/v2/health/ready` says why)."""
        return pb.ServerReadyResponse(ready=self._oip.server_not_ready() is None)

    @_status
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        """Name, version and only the extensions that answer."""
        return pb.ServerMetadataResponse(**self._oip.server_metadata())

    @_status
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        """Readiness of the model or of the version named; NOT_FOUND for an unknown one."""
        try:
            self._oip.check_ready(request.name, request.version or None)
        except ModelNotReady:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_status
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        """Tensors of the champion or of the version named, its `versions` and `platform`."""
        meta = self._oip.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    @_status
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        """Infer; a request that cannot be decoded (or names an unknown model or version) is
        logged as a failed prediction too."""
        started, at = time.perf_counter(), time.time()
        correlation, traceparent = correlation_from(_metadata(context))
        try:
            self._oip.resolve(request.model_name, request.model_version or None)
            decoded = decode_grpc(request, self._runtime.limits)
        except Exception as exc:
            failed = ScoreRequest(
                request.model_name[:128],
                {},
                0,
                "v2-grpc",
                correlation_id=correlation,
                traceparent=traceparent,
            )
            await self._runtime.log_failure(failed, exc, started, at)
            raise
        score = decoded.score
        score.correlation_id, score.traceparent = correlation, traceparent
        result = await self._runtime.score(score)  # it records its own failures
        return encode_grpc(result, decoded)


def _metadata(context: Any) -> dict[str, str]:
    try:
        return {m.key: m.value for m in context.invocation_metadata()}
    except Exception:
        return {}


def _as_loopstack(exc: Exception, model: str, runtime: ServingRuntime) -> Exception:
    """KServe's own decode errors become Loopstack's (so the status and the event agree)."""
    from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady

    from loopstack.serving.errors import BadRequest, ModelNotServed
    from loopstack.serving.errors import ModelNotReady as NotReady

    if isinstance(exc, LoopstackError):
        return exc
    if isinstance(exc, InvalidInput):
        return _keep_logged(exc, BadRequest(str(exc)))
    if isinstance(exc, ModelNotFound):
        return _keep_logged(exc, ModelNotServed(model, runtime.models()))
    if isinstance(exc, ModelNotReady):
        detail = runtime.not_ready_detail(model) or "loading"
        return _keep_logged(exc, NotReady(model, detail))
    if isinstance(exc, ValueError | TypeError | KeyError | IndexError):
        return _keep_logged(exc, BadRequest(f"malformed request: {type(exc).__name__}: {exc}"))
    return exc


def _keep_logged(old: Exception, new: LoopstackError) -> LoopstackError:
    if getattr(old, "_loopstack_logged", False):
        new._loopstack_logged = True  # type: ignore[attr-defined]
    return new


def server_credentials(tls: ServerTLS) -> grpc.ServerCredentials:
    """gRPC credentials presenting the certificate; mutual TLS requires a client certificate."""
    ca = tls.client_ca_file.read_bytes() if tls.client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


class LoopbackGRPCServer(GRPCServer):
    """KServe's gRPC server bound to `host` instead of every interface, over TLS if given."""

    def __init__(
        self,
        host: str,
        status: OIPStatus,
        *args: Any,
        interceptors: list[aio.ServerInterceptor] | None = None,
        tls: ServerTLS | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._host = host
        self._oip = status
        self._interceptors = interceptors or []
        self._tls = tls

    async def start(self, max_workers: int) -> None:
        """Serve until stopped."""
        servicer = _Servicer(self._data_plane, self._model_repository_extension, self._oip)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=self._interceptors,
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                # Refused by gRPC itself (RESOURCE_EXHAUSTED) before anything is parsed: the
                # REST body limit, for the same requests over either protocol.
                ("grpc.max_receive_message_length", self._oip.runtime.limits.max_body_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        host = f"[{self._host}]" if ":" in self._host else self._host
        address = f"{host}:{self._port}"
        if self._tls is not None:
            self._server.add_secure_port(address, server_credentials(self._tls))
        else:
            self._server.add_insecure_port(address)
        await self._server.start()
        await self._server.wait_for_termination()
