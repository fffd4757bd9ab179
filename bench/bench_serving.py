"""Serving bench: Loopstack's runtime vs a bare KServe ModelServer, same model, same machine.

One run starts both servers (one worker each, bound to 127.0.0.1, KServe's per-request logging
off), pinned to core 0, and drives them from core 1 (taskset): single-row OIP v2 REST at
concurrency 1, 8, 32, then gRPC. Loopstack runs with prediction events on (SQLite event log)
and a 90/10 canary. The model is the credit-default logistic pipeline fitted on the shipped
data and registered in a throwaway SQLite MLflow store.

    uv run python bench/bench_serving.py [--seconds 4]

Writes bench/results/serving.json and prints a table with the ratios to the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "feature_repo" / "data"
MODEL = "bench-credit"
ROW = {"student": "No", "balance": 774.07, "income": 46082.04}
SERVER_CORE, LOAD_CORE = "0", "1"


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


# --- load ----------------------------------------------------------------------------------
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


async def _rest_worker(port: int, path: str, body: bytes, until: float, lat: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(head + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            if not headers.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(headers.decode(errors="replace"))
            length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _grpc_worker(stub: Any, request: Any, until: float, lat: list[float]) -> None:
    while time.perf_counter() < until:
        start = time.perf_counter()
        await stub.ModelInfer(request)
        lat.append(time.perf_counter() - start)


def _grpc_request() -> Any:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    inputs = []
    for name, value in ROW.items():
        if isinstance(value, str):
            contents = pb.InferTensorContents(bytes_contents=[value.encode()])
            inputs.append(
                pb.ModelInferRequest.InferInputTensor(
                    name=name, datatype="BYTES", shape=[1], contents=contents
                )
            )
        else:
            contents = pb.InferTensorContents(fp64_contents=[value])
            inputs.append(
                pb.ModelInferRequest.InferInputTensor(
                    name=name, datatype="FP64", shape=[1], contents=contents
                )
            )
    return pb.ModelInferRequest(model_name=MODEL, inputs=inputs)


async def _measure(kind: str, target: str, concurrency: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    if kind == "rest":
        port = int(target)
        body, path = v2_body(), f"/v2/models/{MODEL}/infer"
        await asyncio.gather(
            *[
                _rest_worker(port, path, body, time.perf_counter() + 1.0, [])
                for _ in range(concurrency)
            ]
        )
        start = time.perf_counter()
        until = start + seconds
        await asyncio.gather(
            *[_rest_worker(port, path, body, until, lat) for _ in range(concurrency)]
        )
    else:
        from grpc import aio
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

        async with aio.insecure_channel(target) as channel:
            stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = _grpc_request()
            warm = time.perf_counter() + 1.0
            await asyncio.gather(
                *[_grpc_worker(stub, request, warm, []) for _ in range(concurrency)]
            )
            start = time.perf_counter()
            until = start + seconds
            await asyncio.gather(
                *[_grpc_worker(stub, request, until, lat) for _ in range(concurrency)]
            )
    elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "requests": len(lat),
    }


def run_load(kind: str, target: str, concurrency: int, seconds: float) -> None:
    """Child mode: print one JSON measurement."""
    print(json.dumps(asyncio.run(_measure(kind, target, concurrency, seconds))))


def measure(kind: str, target: str, concurrency: int, seconds: float) -> dict[str, float]:
    """Run the load generator pinned to the load core."""
    argv = [
        "taskset",
        "-c",
        LOAD_CORE,
        sys.executable,
        __file__,
        "--load",
        kind,
        target,
        str(concurrency),
        str(seconds),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- main ------------------------------------------------------------------------------------
def main() -> None:
    """Start both servers, measure, write the results, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_ARTIFACT_ROOT"] = str(work / "artifacts")
    versions = register(tracking)
    bare_port, bare_grpc, ls_port, ls_grpc = (free_port() for _ in range(4))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, sys.executable, __file__, "--bare", tracking, versions[0], str(bare_port), str(bare_grpc)],
            stdout=open(work / "bare.log", "wb"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT, start_new_session=True,
        ))  # fmt: skip
        from loopstack.core.settings import Settings
        from loopstack.serving.traffic import TrafficSplit, TrafficStore

        settings = Settings(
            project_dir=ROOT,
            state_dir=work / "state",
            mlflow={"tracking_uri": tracking},
            serving={"rest_port": ls_port, "grpc_port": ls_grpc, "async_inference": False},
        )
        TrafficStore(settings.state_path / "serving" / "traffic.db").set(
            TrafficSplit(
                model=MODEL,
                champion=versions[0],
                challenger=versions[1],
                mode="canary",
                canary_percent=10,
            )
        )
        env = {**os.environ, **settings.as_env()}
        procs.append(subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, sys.executable, "-m", "loopstack.serving.server"],
            env=env, cwd=ROOT, stdout=open(work / "loopstack.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True,
        ))  # fmt: skip
        wait_ready(f"http://127.0.0.1:{bare_port}/v2/models/{MODEL}/ready")
        wait_ready(f"http://127.0.0.1:{ls_port}/v2/models/{MODEL}/ready")
        results: dict[str, Any] = {"seconds_per_point": opts.seconds, "points": []}
        for kind, concurrency in (
            ("rest", 1),
            ("rest", 8),
            ("rest", 32),
            ("grpc", 1),
            ("grpc", 8),
            ("grpc", 32),
        ):
            for server, rest_port, grpc_port in (
                ("bare", bare_port, bare_grpc),
                ("loopstack", ls_port, ls_grpc),
            ):
                target = str(rest_port) if kind == "rest" else f"127.0.0.1:{grpc_port}"
                point = measure(kind, target, concurrency, opts.seconds)
                results["points"].append(
                    {"server": server, "protocol": kind, "concurrency": concurrency, **point}
                )
        results["ratios"] = _ratios(results["points"])
        results["load_average"] = os.getloadavg()
        out = ROOT / "bench" / "results" / "serving.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        _table(results)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, 15)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, 9)


def _ratios(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(p["server"], p["protocol"], p["concurrency"]): p for p in points}
    out = []
    for protocol in ("rest", "grpc"):
        for c in (1, 8, 32):
            bare, ours = by[("bare", protocol, c)], by[("loopstack", protocol, c)]
            row = {"protocol": protocol, "concurrency": c,
                   "throughput_ratio": ours["rps"] / bare["rps"], "p99_ratio": ours["p99_ms"] / bare["p99_ms"]}  # fmt: skip
            if protocol == "grpc":
                row["grpc_vs_rest_loopstack"] = ours["rps"] / by[("loopstack", "rest", c)]["rps"]
            out.append(row)
    return out


def _table(results: dict[str, Any]) -> None:
    print(f"{'server':10} {'proto':5} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for p in results["points"]:
        print(
            f"{p['server']:10} {p['protocol']:5} {p['concurrency']:>3} {p['rps']:>8.0f} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f}"
        )
    print("\nratios (targets: throughput >= 0.9, p99 <= 1.2, gRPC/REST >= 1.0)")
    for r in results["ratios"]:
        extra = (
            f"  grpc/rest {r['grpc_vs_rest_loopstack']:.2f}"
            if "grpc_vs_rest_loopstack" in r
            else ""
        )
        print(
            f"{r['protocol']:5} c={r['concurrency']:<3} throughput {r['throughput_ratio']:.2f}  p99 {r['p99_ratio']:.2f}{extra}"
        )
    print(f"load average during the run: {results['load_average']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare":
        run_bare(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--load":
        run_load(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
