"""The inference server process: `python -m loopstack.serving.server` (the composition root).

KServe's `ModelServer` with one worker, REST and gRPC bound to `settings.host` (KServe binds
every interface) and over TLS when `tls.cert_file` is set, Loopstack's inference and ingest
routes ahead of KServe's, KServe's per-request log lines off unless `serving.request_logging`,
and a traffic watcher that loads and swaps splits while serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response

from loopstack.core.pii import SensitiveFields
from loopstack.core.settings import Settings, load_settings
from loopstack.serving.errors import ModelNotReady

__all__ = ["ServerParts", "build_parts", "limit_model_threads", "main", "serve"]

log = logging.getLogger(__name__)


@dataclass
class ServerParts:
    """Everything one server process builds once."""

    settings: Settings
    runtime: Any
    sink: Any
    publisher: Any
    event_log: Any
    watcher: Any
    ingest: Any
    consumer_stop: Any = None

    def start(self) -> None:
        """Start following splits and, if enabled, consuming asynchronous requests."""
        from loopstack.serving.async_inference import start_consumer

        self.watcher.start()
        if self.settings.serving.explain_warmup:
            import threading

            from loopstack.serving.explain import warm_up

            threading.Thread(target=warm_up, name="explain-warmup", daemon=True).start()
        if self.settings.serving.async_inference:
            self.consumer_stop = start_consumer(
                self.settings, self.event_log, self.runtime, self.sink
            )

    def close(self) -> None:
        """Stop watching, flush events, close the publisher and the log."""
        if self.consumer_stop is not None:
            self.consumer_stop.set()
        self.watcher.stop()
        self.ingest.close()
        self.runtime.close()
        self.sink.close(timeout=10)
        self.publisher.close(timeout=10)
        self.event_log.close()


def build_parts(settings: Settings, outbox_name: str = "serving") -> ServerParts:
    """Build the runtime and its collaborators from settings."""
    from loopstack.core.events.log import open_event_log
    from loopstack.core.events.outbox import Publisher
    from loopstack.serving.eventsink import EventSink
    from loopstack.serving.explain import Explainers
    from loopstack.serving.features import OnlineFeatureSource
    from loopstack.serving.ingest import LoggerIngest
    from loopstack.serving.loader import load_reference, load_version
    from loopstack.serving.metrics import ServingMetrics
    from loopstack.serving.runtime import ServingRuntime
    from loopstack.serving.schema import NullableFields
    from loopstack.serving.traffic import TrafficStore
    from loopstack.serving.watcher import SplitWatcher

    metrics = ServingMetrics()
    event_log = open_event_log(settings)
    publisher = Publisher.open(settings, event_log, outbox_name)
    sink = EventSink(
        publisher,
        "loopstack/serving",
        metrics,
        settings.serving.event_queue_max,
        durable=settings.serving.durable_answers,
    )
    uri = settings.mlflow_tracking_uri
    explainers = Explainers(
        lambda m, v: load_reference(uri, m, v),
        top_k=settings.serving.explain_top_k,
        background_rows=settings.serving.explain_background_rows,
        max_evals=settings.serving.explain_max_evals,
    )
    sensitive = SensitiveFields(settings.models_dir)
    runtime = ServingRuntime(
        sink,
        metrics,
        OnlineFeatureSource(settings),
        settings.serving.shadow_queue_max,
        accept_request_time=settings.serving.accept_request_time,
        explainers=explainers,
        sensitive=sensitive,
        max_batch_rows=settings.serving.max_batch_rows,
        nullable=NullableFields(settings.models_dir),
        limits=settings.serving.limits,
    )
    store = TrafficStore(settings.state_path / "serving" / "traffic.db")
    watcher = SplitWatcher(
        store, runtime, lambda m, v: load_version(uri, m, v), settings.serving.traffic_poll_s
    )
    ingest = LoggerIngest(
        sink,
        settings.serving.ingest_pair_timeout_s,
        sensitive,
        settings.serving.limits.event_string_chars,
    )
    return ServerParts(settings, runtime, sink, publisher, event_log, watcher, ingest)


def _quiet_kserve(request_logging: bool) -> None:
    """KServe's per-request lines cost throughput; prediction events are the record."""
    warnings.filterwarnings("ignore", message=".*ORJSONResponse.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if not request_logging:
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _add_ingest_route(app: FastAPI, parts: ServerParts) -> None:
    from loopstack.serving.ingest import INGEST_PATH
    from loopstack.serving.rest import error_response

    async def ingest(request: Request) -> Response:
        """Accept one KServe logger CloudEvent (binary mode)."""
        try:
            body = await parts.runtime.limits.read_body(request)
            state = parts.ingest.accept(request.headers, body)
        except Exception as exc:
            return error_response(exc)
        return Response(f'{{"status":"{state}"}}', 202, media_type="application/json")

    app.add_api_route(INGEST_PATH, ingest, methods=["POST"], response_model=None)


def serve(settings: Settings) -> None:
    """Run the inference server until SIGTERM."""
    from kserve import ModelServer
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.errors import ModelNotReady as KServeNotReady
    from kserve.model_server import args as kserve_args
    from kserve.protocol.rest.server import RESTServer
    from prometheus_client import REGISTRY  # noqa: F401 - KServe's /metrics serves it

    from loopstack.serving.auth import InferenceAuth
    from loopstack.serving.grpc_server import LoopbackGRPCServer
    from loopstack.serving.kserve_model import LoopstackModel
    from loopstack.serving.metadata import OIPStatus
    from loopstack.serving.rest import add_inference_routes

    parts = build_parts(settings)
    status = OIPStatus(parts.runtime, parts.watcher.readiness)
    request_logging = settings.serving.request_logging
    inference_auth = InferenceAuth(settings) if settings.auth.inference else None

    class _RESTServer(RESTServer):
        def _add_middlewares(self, app: FastAPI) -> None:
            if request_logging:
                super()._add_middlewares(app)

        def create_application(self) -> None:
            from uvicorn.importer import import_from_string

            app: FastAPI = import_from_string(FASTAPI_APP_IMPORT_STRING)
            add_inference_routes(app, parts.runtime, status)  # first: ahead of KServe's routes
            _add_ingest_route(app, parts)
            self._add_middlewares(app)
            if inference_auth is not None:
                from loopstack.serving.rest import error_response

                inference_auth.install_rest(app, error_response)
            self._register_endpoints(app)
            self._add_exception_handlers(app)

            async def not_ready(_: Request, exc: Exception) -> Response:
                model = getattr(exc, "model_name", "?")
                detail = parts.runtime.not_ready_detail(model) or "loading"
                from loopstack.serving.rest import error_response

                return error_response(ModelNotReady(model, detail))

            app.add_exception_handler(KServeNotReady, not_ready)

    class _Server(ModelServer):
        def start(self, models: list[Any]) -> None:
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = _RESTServer(
                FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                workers=1,
                grace_period=self.grace_period,
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
            )
            self._rest_server.config.host = settings.host
            self._rest_server.config.access_log = request_logging
            if settings.server_tls is not None:  # read by uvicorn when it starts
                for option, value in settings.server_tls.uvicorn_options().items():
                    setattr(self._rest_server.config, option, value)
            self.servers.append(self._rest_server.start())
            self._grpc_server = LoopbackGRPCServer(
                settings.host,
                status,
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(kserve_args),
                grace_period=self.grace_period,
                interceptors=[inference_auth.grpc_interceptor()] if inference_auth else [],
                tls=settings.server_tls,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

        def stop(self, sig: int) -> None:
            if self._rest_server is not None:
                self._rest_server._server.should_exit = True
            super().stop(sig)

    server = _Server(
        http_port=settings.serving.rest_port,
        grpc_port=settings.serving.grpc_port,
        workers=1,
        enable_grpc=True,
        enable_latency_logging=request_logging,
        grace_period=5,
    )
    _quiet_kserve(request_logging)
    parts.runtime.on_model_added = lambda name: server.register_model(
        LoopstackModel(name, parts.runtime)
    )
    parts.start()
    try:
        server.start([])
    finally:
        parts.close()


def limit_model_threads(threads: int) -> None:
    """Cap OpenMP/BLAS pools; must run before numpy/sklearn load them (threadpoolctl is too late).

    Small requests: waking a thread pool costs more than it saves (an HGB model answered one row
    in ~75 ms with 2 OpenMP threads and ~12 ms with 1 on a busy 2-core machine).
    """
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))


def main() -> None:
    """Entry point: load settings once, serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    limit_model_threads(settings.serving.model_threads)
    serve(settings)


if __name__ == "__main__":
    main()
