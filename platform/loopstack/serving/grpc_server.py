"""OIP v2 gRPC on KServe's own servicer, bound to the configured host (KServe binds `[::]`).

KServe builds the listen address inside `GRPCServer.start`, so `start` is overridden (and adds
a TLS port instead of a plaintext one when the settings give a certificate); the
per-call "grpc method" log interceptor is left out (events are the record), and Loopstack
errors map to gRPC codes here, in one place.
"""

from __future__ import annotations

import time
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
from loopstack.serving.runtime import ScoreRequest, ServingRuntime, correlation_from

__all__ = ["LoopbackGRPCServer"]

_CODES = {
    400: StatusCode.INVALID_ARGUMENT,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    409: StatusCode.FAILED_PRECONDITION,
    503: StatusCode.UNAVAILABLE,
}


class _ErrorsToStatus(ExceptionToStatusInterceptor):
    """KServe's mapping, plus Loopstack errors by their HTTP category (never INTERNAL for a 4xx)."""

    async def handle_exception(
        self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str
    ) -> None:
        if isinstance(ex, LoopstackError):
            code = _CODES.get(ex.http_status, StatusCode.INTERNAL)
            await context.abort(code, ex.message)
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class _Servicer(InferenceServicer):
    """KServe's servicer; failures before the model is reached are logged as failed predictions."""

    def __init__(self, data_plane: Any, extension: Any, runtime: ServingRuntime) -> None:
        super().__init__(data_plane, extension)
        self._runtime = runtime

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        """Infer, recording any failure the runtime has not recorded yet."""
        started, at = time.perf_counter(), time.time()
        try:
            return await super().ModelInfer(request, context)
        except Exception as exc:
            correlation, traceparent = correlation_from(_metadata(context))
            failed = ScoreRequest(
                request.model_name,
                {},
                0,
                "v2-grpc",
                correlation_id=correlation,
                traceparent=traceparent,
            )
            error = _as_loopstack(exc, request.model_name, self._runtime)
            self._runtime.record_failure(failed, error, started, at)
            raise error from exc


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
        runtime: ServingRuntime,
        *args: Any,
        interceptors: list[aio.ServerInterceptor] | None = None,
        tls: ServerTLS | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._host = host
        self._runtime = runtime
        self._interceptors = interceptors or []
        self._tls = tls

    async def start(self, max_workers: int) -> None:
        """Serve until stopped."""
        servicer = _Servicer(self._data_plane, self._model_repository_extension, self._runtime)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(*self._interceptors, _ErrorsToStatus()),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                (
                    "grpc.max_receive_message_length",
                    self._kwargs.get("grpc_max_receive_message_length"),
                ),
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
