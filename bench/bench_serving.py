"""Serving bench: Loopstack's runtime vs a bare KServe ModelServer, same model, same machine.

One run starts both servers (one worker each, bound to 127.0.0.1, KServe's per-request logging
off), pinned to core 0 with `os.sched_setaffinity`, and drives them from a load generator
pinned to core 1: single-row OIP v2 REST and gRPC at concurrency 1, 8, 32. Loopstack runs with
prediction events on (SQLite event log), a 90/10 canary and adaptive batching (its default: the
bare server scores each request alone, so at concurrency 8 and 32 the ratio shows what batching
buys). The model is the credit-default
logistic pipeline fitted on the shipped data and registered in a throwaway SQLite MLflow store.

The load generator is one asyncio process per point, built alike for both protocols so that it
is never what a ratio measures: N workers, each with its own connection and one request in
flight, sending bytes encoded once before the clock starts and reading the answer's bytes
without decoding them.
- REST: a raw HTTP/1.1 keep-alive socket per worker (request head and JSON body prebuilt; the
  status line and `content-length` read, the body read whole).
- gRPC: a raw HTTP/2 connection per worker calling `ModelInfer`: the HEADERS and DATA frames
  built once (the request serialized once), the answer's frames read as bytes; a call without
  a message in its answer raises. (`grpc.aio` costs the generator ~0.6-0.9 ms of CPU per call
  against ~0.2 ms for either raw client: at concurrency 1 that sits in every round trip, and
  gRPC would be measured with a handicap REST does not carry.)
The input forms line serves a numeric model (`bench-numeric`: the credit logistic on balance
and income) on the same Loopstack server and sends it the same rows as one tensor per column and
as one `[N, F]` tensor (1 and 64 rows a request, concurrency 8, REST JSON and gRPC contents):
the matrix/columns throughput ratio must not fall below 1 (`--only forms` runs just that).
Beside it, what differs between the two forms is timed in-process, without the network, the model
and the events both share: decode, split and check, build the frame (best of 7 timings, CPU).
A third pair of servers gives each protocol's floor: a no-op answer on the same server stack
(FastAPI on uvicorn for REST, `grpc.aio` for gRPC), so the table shows what one call costs
before any model, codec or event work, and the gRPC/REST ratio that stack alone allows.
The generator also reads the server's own CPU time around the timed window
(`/proc/PID/stat`) to report it per request: a cost that background load on the machine
disturbs far less than throughput.

Points are measured in `--rounds` rounds, the order reversed every other round (bare/Loopstack,
REST/gRPC interleaved at each concurrency), and each figure is the median over rounds; every
ratio compares figures of the same run (the machine has 2 cores and is shared).

    uv run python bench/bench_serving.py [--seconds 3] [--rounds 5] [--only all|forms]

Writes bench/results/serving.json (serving-forms.json with `--only forms`) and prints a table
with the ratios to the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import Request, Response  # module level: FastAPI resolves the floor's annotations

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "feature_repo" / "data"
MODEL = "bench-credit"
ROW = {"student": "No", "balance": 774.07, "income": 46082.04}
NUMERIC = "bench-numeric"
NUMERIC_ROW = {"balance": 774.07, "income": 46082.04}
FORMS = ("columns", "matrix")
FORM_ROWS = (1, 64)
FORM_CONCURRENCY = 8
SERVER_CORE, LOAD_CORE = 0, 1
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
CONCURRENCY = (1, 8, 32)


def pinned(core: int) -> Any:
    """A `preexec_fn` that pins the child (and every thread it starts) to one core."""
    return lambda: os.sched_setaffinity(0, {core})


# --- the bare KServe server (run as a child: `bench_serving.py --bare TRACKING PORT GRPC`) ----
def run_bare(tracking: str, version: str, port: int, grpc_port: int) -> None:
    """A minimal kserve.Model over the same sklearn model; loopback bind, request logs off."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the same thread cap Loopstack applies
    import logging
    from concurrent import futures

    import mlflow
    import numpy as np
    from grpc import aio
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.grpc.servicer import InferenceServicer

    mlflow.set_tracking_uri(tracking)
    estimator = mlflow.sklearn.load_model(f"models:/{MODEL}/{version}")

    class Bare(Model):
        def __init__(self) -> None:
            super().__init__(MODEL)
            self.ready = True

        def predict(self, payload: InferRequest, headers: Any = None) -> InferResponse:
            proba = estimator.predict_proba(payload.as_dataframe())
            out = InferOutput("probabilities", list(proba.shape), "FP64")
            out.set_data_from_numpy(np.asarray(proba, dtype=np.float64), binary_data=False)
            return InferResponse(payload.id or "", MODEL, [out])

    class LoopbackGRPC(GRPCServer):
        async def start(self, max_workers: int) -> None:
            servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
            )
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                servicer, self._server
            )
            self._server.add_insecure_port(f"127.0.0.1:{self._port}")
            await self._server.start()
            await self._server.wait_for_termination()

    import kserve.model_server as model_server
    import kserve.protocol.rest.server as rest_server

    original = rest_server.RESTServer.__init__

    def loopback_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.config.host, self.config.access_log = "127.0.0.1", False

    rest_server.RESTServer.__init__ = loopback_init  # type: ignore[method-assign]
    model_server.GRPCServer = LoopbackGRPC  # type: ignore[misc]
    server = ModelServer(
        http_port=port, grpc_port=grpc_port, workers=1, enable_latency_logging=False
    )
    for name in ("kserve", "kserve.trace", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([Bare()])


# --- the protocol floor (children: `bench_serving.py --floor rest|grpc PORT`) ----------------
def run_floor(protocol: str, port: int) -> None:
    """A no-op answer on the server stack each protocol uses (FastAPI on uvicorn; grpc.aio):
    what one call costs before any model, codec or event work."""
    if protocol == "rest":
        import uvicorn
        from fastapi import FastAPI

        app = FastAPI()
        output = {"name": "p", "datatype": "FP64", "shape": [1, 2], "data": [0.1, 0.9]}
        answer = json.dumps({"model_name": MODEL, "outputs": [output]}).encode()

        @app.post("/v2/models/{name}/infer")
        async def infer(name: str, request: Request) -> Response:
            json.loads(await request.body())
            return Response(answer, media_type="application/json")

        uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
        return
    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    tensor = pb.ModelInferResponse.InferOutputTensor(
        name="p",
        datatype="FP64",
        shape=[1, 2],
        contents=pb.InferTensorContents(fp64_contents=[0.1, 0.9]),
    )
    reply = pb.ModelInferResponse(model_name=MODEL, outputs=[tensor])

    class Floor(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request: Any, context: Any) -> Any:
            return reply

    async def serve() -> None:
        server = aio.server()
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Floor(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


# --- setup -------------------------------------------------------------------------------
def register(tracking: str) -> list[str]:
    """Fit the credit pipeline twice (two versions for the canary) and register both."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    sys.path.insert(0, str(ROOT / "models" / "credit-default"))
    from train import build_estimator  # type: ignore[import-not-found]

    customers = pd.read_parquet(DATA / "credit_customers.parquet")
    labels = pd.read_parquet(DATA / "credit_default_labels.parquet")
    frame = customers.merge(labels[["customer_id", "default"]], on="customer_id")
    x = frame[list(ROW)]
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient(tracking)
    client.create_registered_model(MODEL)
    versions = []
    for strength in (1.0, 0.1):
        model = build_estimator({"model": "logistic", "C": strength}).fit(x, frame["default"])
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(x.head(5), model.predict_proba(x.head(5))[:, 1]),
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn"],
            )
        versions.append(
            str(client.create_model_version(MODEL, info.model_uri, model_id=info.model_id).version)
        )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    numeric = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        frame[list(NUMERIC_ROW)], frame["default"]
    )
    with mlflow.start_run():
        sample = frame[list(NUMERIC_ROW)].head(5)
        info = mlflow.sklearn.log_model(
            numeric,
            name="model",
            signature=infer_signature(sample, numeric.predict_proba(sample)[:, 1]),
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],
        )
    client.create_registered_model(NUMERIC)
    client.create_model_version(NUMERIC, info.model_uri, model_id=info.model_id)
    return versions


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 120) -> None:
    """Poll until the URL answers 200."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(url)


def start_server(
    procs: list[subprocess.Popen[bytes]],
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
) -> int:
    """Start a server child in a session of its own, pinned to the server core, its output in
    `log`; add it to `procs` (for `stop_servers`) and return its pid."""
    procs.append(subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=open(log, "wb"),  # noqa: SIM115 - the child owns it
        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pinned(SERVER_CORE),
    ))  # fmt: skip
    return procs[-1].pid


def stop_servers(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child's process group; SIGKILL it if it has not exited 10 s later."""
    for proc in procs:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, 9)


def write_results(results: dict[str, Any], name: str) -> None:
    """Write the results as bench/results/NAME."""
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


# --- load ----------------------------------------------------------------------------------
def form_bodies(form: str, rows: int) -> tuple[bytes, bytes]:
    """`rows` numeric rows as v2 JSON and as a serialized gRPC request: one tensor per column
    (`columns`) or one `[rows, F]` tensor in signature order (`matrix`)."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    tensor = pb.ModelInferRequest.InferInputTensor
    if form == "matrix":
        flat = [v for _ in range(rows) for v in NUMERIC_ROW.values()]
        shape = [rows, len(NUMERIC_ROW)]
        json_inputs = [{"name": "input-0", "datatype": "FP64", "shape": shape, "data": flat}]
        grpc_inputs = [tensor(name="input-0", datatype="FP64", shape=shape,
                              contents=pb.InferTensorContents(fp64_contents=flat))]  # fmt: skip
    else:
        json_inputs = [
            {"name": k, "datatype": "FP64", "shape": [rows], "data": [v] * rows}
            for k, v in NUMERIC_ROW.items()
        ]
        grpc_inputs = [
            tensor(name=k, datatype="FP64", shape=[rows],
                   contents=pb.InferTensorContents(fp64_contents=[v] * rows))
            for k, v in NUMERIC_ROW.items()
        ]  # fmt: skip
    request = pb.ModelInferRequest(model_name=NUMERIC, inputs=grpc_inputs)
    return json.dumps({"inputs": json_inputs}).encode(), request.SerializeToString()


def v2_body() -> bytes:
    """One row as an OIP v2 JSON request."""
    inputs = [
        {
            "name": k,
            "datatype": "BYTES" if isinstance(v, str) else "FP64",
            "shape": [1],
            "data": [v],
        }
        for k, v in ROW.items()
    ]
    return json.dumps({"inputs": inputs}).encode()


def grpc_body() -> bytes:
    """One row as a serialized OIP v2 `ModelInferRequest` (typed contents, as clients send)."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    inputs = []
    for name, value in ROW.items():
        if isinstance(value, str):
            datatype, contents = "BYTES", pb.InferTensorContents(bytes_contents=[value.encode()])
        else:
            datatype, contents = "FP64", pb.InferTensorContents(fp64_contents=[value])
        inputs.append(
            pb.ModelInferRequest.InferInputTensor(
                name=name, datatype=datatype, shape=[1], contents=contents
            )
        )
    return bytes(pb.ModelInferRequest(model_name=MODEL, inputs=inputs).SerializeToString())


class _Rest:
    """One raw HTTP/1.1 keep-alive connection."""

    def __init__(self, port: int, body: bytes, model: str = MODEL) -> None:
        self.port = port
        self.request = (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self) -> None:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# HTTP/2 frame types and flags (RFC 9113) the raw gRPC client uses.
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _END_HEADERS, _ACK = 0x1, 0x4, 0x1
_MAX_WINDOW = 2**31 - 1


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _hpack_literal(index: int, value: bytes) -> bytes:
    """A header field without indexing, its name from the static table (RFC 7541 6.2.2)."""
    name = bytes((index,)) if index < 15 else bytes((15, index - 15))
    return name + bytes((len(value),)) + value


class _Grpc:
    """One raw HTTP/2 connection calling ModelInfer: the request frames built once (stateless
    HPACK, no Huffman), the answer's frames read without decoding, like the REST client.

    A call succeeds when the answer carries a message (DATA) before its trailers; an error is a
    trailers-only answer or a reset stream. The window is opened wide at connect, SETTINGS and
    PINGs are acknowledged (gRPC probes bandwidth with them)."""

    def __init__(self, target: str, body: bytes) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.headers = (
            b"\x83\x86"  # :method POST, :scheme http
            + _hpack_literal(4, GRPC_METHOD.encode())  # :path
            + _hpack_literal(1, target.encode())  # :authority
            + _hpack_literal(31, b"application/grpc")  # content-type
            + b"\x00\x02te\x08trailers"
        )
        self.message = b"\x00" + len(body).to_bytes(4, "big") + body
        self.stream = -1
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        settings = (2).to_bytes(2, "big") + (0).to_bytes(4, "big")  # no server push
        settings += (4).to_bytes(2, "big") + _MAX_WINDOW.to_bytes(4, "big")  # stream window
        writer.write(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            + _frame(_SETTINGS, 0, 0, settings)
            + _frame(_WINDOW_UPDATE, 0, 0, (_MAX_WINDOW - 65535).to_bytes(4, "big"))
        )
        self.reader, self.writer = reader, writer
        return reader, writer

    async def call(self) -> None:
        if self.reader is None or self.writer is None:
            reader, writer = await self._connect()
        else:
            reader, writer = self.reader, self.writer
        self.stream += 2
        stream = self.stream
        writer.write(
            _frame(_HEADERS, _END_HEADERS, stream, self.headers)
            + _frame(_DATA, _END_STREAM, stream, self.message)
        )
        received = 0
        while True:
            head = await reader.readexactly(9)
            length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            payload = await reader.readexactly(length) if length else b""
            if kind == _SETTINGS and not flags & _ACK:
                writer.write(_frame(_SETTINGS, _ACK, 0))
            elif kind == _PING and not flags & _ACK:
                writer.write(_frame(_PING, _ACK, 0, payload))
            elif kind == _GOAWAY:
                raise ConnectionError("the server sent GOAWAY")
            elif int.from_bytes(head[5:9], "big") & 0x7FFFFFFF == stream:
                if kind == _RST_STREAM:
                    raise RuntimeError("the server reset the stream")
                received += length if kind == _DATA else 0
                if kind in (_DATA, _HEADERS) and flags & _END_STREAM:
                    if received <= 5:
                        raise RuntimeError("the call failed (a trailers-only answer)")
                    return

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads (Linux `/proc/PID/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(clients: list[Any], until: float, lat: list[float]) -> None:
    async def worker(client: Any) -> None:
        while time.perf_counter() < until:
            start = time.perf_counter()
            await client.call()
            lat.append(time.perf_counter() - start)

    await asyncio.gather(*[worker(c) for c in clients])


async def _measure(
    kind: str, target: str, concurrency: int, seconds: float, server_pid: int, form: str = ""
) -> dict[str, float]:
    """One point; `form` (`columns-N` / `matrix-N`) sends N numeric rows in that form."""
    if form:
        name, rows = form.split("-")
        rest_body, grpc_body_ = form_bodies(name, int(rows))
        model = NUMERIC
    else:
        rest_body, grpc_body_, model = v2_body(), grpc_body(), MODEL
    if kind == "rest":
        clients: list[Any] = [_Rest(int(target), rest_body, model) for _ in range(concurrency)]
    else:
        clients = [_Grpc(target, grpc_body_) for _ in range(concurrency)]
    try:
        await _drive(clients, time.perf_counter() + 1.0, [])  # connect and warm up
        lat: list[float] = []
        cpu, start = _cpu_seconds(server_pid), time.perf_counter()
        await _drive(clients, start + seconds, lat)
        elapsed, cpu = time.perf_counter() - start, _cpu_seconds(server_pid) - cpu
    finally:
        for client in clients:
            await client.close()
    lat.sort()
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "server_cpu_ms": cpu * 1000 / len(lat),
        "requests": len(lat),
    }


def run_load(
    kind: str, target: str, concurrency: int, seconds: float, server_pid: int, form: str
) -> None:
    """Child mode: print one JSON measurement."""
    point = asyncio.run(_measure(kind, target, concurrency, seconds, server_pid, form))
    print(json.dumps(point))


def measure(
    kind: str, target: str, concurrency: int, seconds: float, server_pid: int, form: str = ""
) -> dict[str, float]:
    """Run the load generator in its own process, pinned to the load core."""
    argv = [sys.executable, __file__, "--load", kind, target, str(concurrency), str(seconds)]
    done = subprocess.run(
        [*argv, str(server_pid), form],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        preexec_fn=pinned(LOAD_CORE),
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _median_point(samples: list[dict[str, float]]) -> dict[str, float]:
    point = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    point["requests"] = sum(s["requests"] for s in samples)
    return point


# --- main ------------------------------------------------------------------------------------
def main() -> None:
    """Start the servers, measure, write the results, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per point")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; figures are medians")
    parser.add_argument(
        "--only", choices=("all", "forms"), default="all", help="forms: only the input forms"
    )
    opts = parser.parse_args()
    everything = opts.only == "all"
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_ARTIFACT_ROOT"] = str(work / "artifacts")
    versions = register(tracking)
    bare_port, bare_grpc, ls_port, ls_grpc, floor_rest, floor_grpc = (free_port() for _ in range(6))
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: str, env: dict[str, str] | None = None) -> int:
        return start_server(procs, argv, work / log, env)

    try:
        here = [sys.executable, __file__]
        if everything:
            bare = start(
                [*here, "--bare", tracking, versions[0], str(bare_port), str(bare_grpc)],
                "bare.log",
            )
            floor = {
                "rest": start([*here, "--floor", "rest", str(floor_rest)], "floor-rest.log"),
                "grpc": start([*here, "--floor", "grpc", str(floor_grpc)], "floor-grpc.log"),
            }
        from loopstack.core.settings import Settings
        from loopstack.serving.traffic import TrafficSplit, TrafficStore

        settings = Settings(
            project_dir=ROOT,
            state_dir=work / "state",
            mlflow={"tracking_uri": tracking},
            serving={"rest_port": ls_port, "grpc_port": ls_grpc, "async_inference": False},
        )
        traffic = TrafficStore(settings.state_path / "serving" / "traffic.db")
        traffic.set(
            TrafficSplit(
                model=MODEL,
                champion=versions[0],
                challenger=versions[1],
                mode="canary",
                canary_percent=10,
            )
        )
        traffic.set(TrafficSplit(model=NUMERIC, champion="1"))
        env = {**os.environ, **settings.as_env()}
        ours = start([sys.executable, "-m", "loopstack.serving.server"], "loopstack.log", env)
        wait_ready(f"http://127.0.0.1:{ls_port}/v2/models/{MODEL}/ready")
        wait_ready(f"http://127.0.0.1:{ls_port}/v2/models/{NUMERIC}/ready")
        loopstack = {"rest": (str(ls_port), ours), "grpc": (f"127.0.0.1:{ls_grpc}", ours)}
        results: dict[str, Any] = {"seconds_per_point": opts.seconds, "rounds": opts.rounds}
        if not everything:
            results["input_forms"] = _measure_forms(loopstack, opts.rounds, opts.seconds)
            results["load_average"] = os.getloadavg()
            write_results(results, "serving-forms.json")
            _forms_table(results["input_forms"])
            return
        wait_ready(f"http://127.0.0.1:{bare_port}/v2/models/{MODEL}/ready")
        wait_ready(f"http://127.0.0.1:{floor_rest}/docs")
        # server -> protocol -> (load generator target, server pid)
        servers = {
            "bare": {"rest": (str(bare_port), bare), "grpc": (f"127.0.0.1:{bare_grpc}", bare)},
            "loopstack": loopstack,
            "floor": {
                "rest": (str(floor_rest), floor["rest"]),
                "grpc": (f"127.0.0.1:{floor_grpc}", floor["grpc"]),
            },
        }
        samples: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        for round_ in range(opts.rounds):
            for concurrency in CONCURRENCY:
                order = [(s, k) for k in ("rest", "grpc") for s in servers]
                for server, kind in order[::-1] if round_ % 2 else order:
                    target, pid = servers[server][kind]
                    point = measure(kind, target, concurrency, opts.seconds, pid)
                    samples.setdefault((server, kind, concurrency), []).append(point)
        results["points"] = [
            {"server": s, "protocol": k, "concurrency": c, **_median_point(samples[(s, k, c)])}
            for k in ("rest", "grpc")
            for c in CONCURRENCY
            for s in servers
        ]
        results["ratios"] = _ratios(results["points"])
        results["input_forms"] = _measure_forms(loopstack, opts.rounds, opts.seconds)
        results["load_average"] = os.getloadavg()
        write_results(results, "serving.json")
        _table(results)
        _forms_table(results["input_forms"])
    finally:
        stop_servers(procs)


def _measure_forms(
    loopstack: dict[str, tuple[str, int]], rounds: int, seconds: float
) -> dict[str, Any]:
    """The same numeric rows as columns and as one `[N, F]` tensor, interleaved per round."""
    samples: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    order = [(k, f, n) for n in FORM_ROWS for k in ("rest", "grpc") for f in FORMS]
    for round_ in range(rounds):
        for kind, form, rows in order[::-1] if round_ % 2 else order:
            target, pid = loopstack[kind]
            point = measure(kind, target, FORM_CONCURRENCY, seconds, pid, f"{form}-{rows}")
            samples.setdefault((kind, form, rows), []).append(point)
    points: list[dict[str, Any]] = [
        {"protocol": k, "form": f, "rows": n, "concurrency": FORM_CONCURRENCY,
         **_median_point(samples[(k, f, n)])}
        for k, f, n in order
    ]  # fmt: skip
    by = {(p["protocol"], p["form"], p["rows"]): p for p in points}
    ratios = [
        {"protocol": k, "rows": n,
         "throughput_ratio": by[(k, "matrix", n)]["rps"] / by[(k, "columns", n)]["rps"],
         "server_cpu_ratio": by[(k, "matrix", n)]["server_cpu_ms"]
         / by[(k, "columns", n)]["server_cpu_ms"]}
        for n in FORM_ROWS
        for k in ("rest", "grpc")
    ]  # fmt: skip
    return {"points": points, "ratios": ratios, "in_process": _form_codec_costs()}


def _form_codec_costs() -> list[dict[str, Any]]:
    """Per form, rows and protocol: microseconds from request bytes to the model's frame."""
    import timeit

    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from loopstack.serving.codec import decode_grpc, decode_v2
    from loopstack.serving.schema import Column, ModelSchema

    schema = ModelSchema([Column(n, "double", "FP64", "float", "float64") for n in NUMERIC_ROW])

    def to_frame(score: Any) -> None:
        checked: Any = ()
        if score.matrix is not None:  # as the runtime does
            columns, done = schema.split(score.matrix)
            score.columns = columns
            checked = columns.keys() if done else ()
        schema.build(schema.check(score.columns, score.rows, (), checked))

    costs: list[dict[str, Any]] = []
    for rows in FORM_ROWS:
        per: dict[tuple[str, str], float] = {}
        for form in FORMS:
            rest, grpc = form_bodies(form, rows)
            calls = {
                "rest": lambda rest=rest: to_frame(decode_v2(rest, {}, NUMERIC, None).score),
                "grpc": lambda grpc=grpc: to_frame(
                    decode_grpc(pb.ModelInferRequest.FromString(grpc)).score
                ),
            }
            for kind, call in calls.items():
                best = min(timeit.repeat(call, number=300, repeat=7, timer=time.process_time))
                per[(kind, form)] = best / 300 * 1e6
        for kind in ("rest", "grpc"):
            costs.append({
                "protocol": kind, "rows": rows, "columns_us": per[(kind, "columns")],
                "matrix_us": per[(kind, "matrix")],
                "ratio": per[(kind, "matrix")] / per[(kind, "columns")],
            })  # fmt: skip
    return costs


def _forms_table(forms: dict[str, Any]) -> None:
    print(f"\ninput forms: {NUMERIC}, concurrency {FORM_CONCURRENCY}, one [N, F] tensor vs columns")
    print(f"{'proto':5} {'form':8} {'rows':>4} {'req/s':>8} {'p99 ms':>8} {'cpu ms/req':>10}")
    for p in forms["points"]:
        print(
            f"{p['protocol']:5} {p['form']:8} {p['rows']:>4} {p['rps']:>8.0f} "
            f"{p['p99_ms']:>8.2f} {p['server_cpu_ms']:>10.2f}"
        )
    print("matrix/columns (target: throughput >= 1.0)")
    for r in forms["ratios"]:
        print(
            f"{r['protocol']:5} rows={r['rows']:<3} throughput {r['throughput_ratio']:.2f}  "
            f"cpu/req {r['server_cpu_ratio']:.2f}"
        )
    print("in-process, request bytes to the model's frame (target: matrix/columns <= 1.0)")
    for c in forms["in_process"]:
        print(
            f"{c['protocol']:5} rows={c['rows']:<3} columns {c['columns_us']:.1f} us  "
            f"matrix {c['matrix_us']:.1f} us  ratio {c['ratio']:.2f}"
        )


def _ratios(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(p["server"], p["protocol"], p["concurrency"]): p for p in points}
    out = []
    for protocol in ("rest", "grpc"):
        for c in CONCURRENCY:
            bare, ours = by[("bare", protocol, c)], by[("loopstack", protocol, c)]
            row = {
                "protocol": protocol,
                "concurrency": c,
                "throughput_ratio": ours["rps"] / bare["rps"],
                "p99_ratio": ours["p99_ms"] / bare["p99_ms"],
                "server_cpu_ratio": ours["server_cpu_ms"] / bare["server_cpu_ms"],
            }
            if protocol == "grpc":
                for server in ("loopstack", "bare", "floor"):
                    rest = by[(server, "rest", c)]
                    grpc = by[(server, "grpc", c)]
                    row[f"grpc_vs_rest_{server}"] = grpc["rps"] / rest["rps"]
                    row[f"grpc_vs_rest_cpu_{server}"] = (
                        grpc["server_cpu_ms"] / rest["server_cpu_ms"]
                    )
            out.append(row)
    return out


def _table(results: dict[str, Any]) -> None:
    print(f"medians of {results['rounds']} rounds of {results['seconds_per_point']:g} s per point")
    print(
        f"{'server':10} {'proto':5} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>10}"
    )
    for p in results["points"]:
        print(
            f"{p['server']:10} {p['protocol']:5} {p['concurrency']:>3} {p['rps']:>8.0f} "
            f"{p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f} {p['server_cpu_ms']:>10.2f}"
        )
    print("\nratios (targets: throughput >= 0.9, p99 <= 1.2, Loopstack gRPC/REST >= 1.0)")
    for r in results["ratios"]:
        extra = ""
        if "grpc_vs_rest_loopstack" in r:
            extra = (
                f"  grpc/rest {r['grpc_vs_rest_loopstack']:.2f} (bare {r['grpc_vs_rest_bare']:.2f},"
                f" floor {r['grpc_vs_rest_floor']:.2f})  cpu/req grpc/rest"
                f" {r['grpc_vs_rest_cpu_loopstack']:.2f} (bare {r['grpc_vs_rest_cpu_bare']:.2f},"
                f" floor {r['grpc_vs_rest_cpu_floor']:.2f})"
            )
        print(
            f"{r['protocol']:5} c={r['concurrency']:<3} throughput {r['throughput_ratio']:.2f}  "
            f"p99 {r['p99_ratio']:.2f}  cpu/req {r['server_cpu_ratio']:.2f}{extra}"
        )
    print(f"load average during the run: {results['load_average']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare":
        run_bare(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--floor":
        run_floor(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--load":
        form = sys.argv[7] if len(sys.argv) > 7 else ""
        run_load(
            sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), form
        )
    else:
        main()
