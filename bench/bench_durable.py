"""Durable answers bench: what waiting for the prediction event's outbox write costs an answer.

Two Loopstack inference servers in one run, alike but for `serving.durable_answers` (on: an
answer leaves once its event is committed to the process's SQLite outbox, group-committed with
concurrent answers; off: the event is queued in memory and written a moment later). Both serve
the credit-default logistic pipeline (`bench_serving.register`) as a plain champion, pinned to
core 0 while the load generator of `bench_serving` runs on core 1: single-row OIP v2 REST and
gRPC at concurrency 1 and 8. Points are measured in `--rounds` rounds, on/off interleaved and the
order reversed every other round; each figure is the median over rounds, and each on/off ratio
compares figures of the same run. On a shared machine the server's CPU time per request is the
steadiest of these figures.

Beside it, in-process (no network, no model): the time from an answer's event handed to the
sink to its outbox commit, one answer at a time (what durability adds to a lone request), and
answers per outbox transaction when 1, 8 and 64 answers wait at once (the group commit), on a
real Publisher, SQLite outbox and SQLite event log. `--only in-process` runs just that.

    uv run python bench/bench_durable.py [--seconds 3] [--rounds 3] [--only all|in-process]

Writes bench/results/durable.json and prints the table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_serving import (  # type: ignore[import-not-found]
    MODEL,
    ROOT,
    ROW,
    _median_point,
    free_port,
    measure,
    register,
    start_server,
    stop_servers,
    wait_ready,
    write_results,
)

CONCURRENCY = (1, 8)
MODES = ("on", "off")
PROTOCOLS = ("rest", "grpc")


def main() -> None:
    """Start both servers, measure them interleaved, write and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per point")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--only", choices=("all", "in-process"), default="all")
    opts = parser.parse_args()
    if opts.only == "in-process":
        in_process_table(in_process())
        return
    work = Path(tempfile.mkdtemp(prefix="bench-durable-"))
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_ARTIFACT_ROOT"] = str(work / "artifacts")
    champion = register(tracking)[0]
    from loopstack.core.settings import Settings
    from loopstack.serving.traffic import TrafficSplit, TrafficStore

    procs: list[subprocess.Popen[bytes]] = []
    targets: dict[str, dict[str, tuple[str, int]]] = {}
    try:
        for mode in MODES:
            rest, grpc = free_port(), free_port()
            settings = Settings(
                project_dir=ROOT,
                state_dir=work / f"state-{mode}",  # each server owns its outbox file
                mlflow={"tracking_uri": tracking},
                serving={
                    "rest_port": rest,
                    "grpc_port": grpc,
                    "async_inference": False,
                    "durable_answers": mode == "on",
                },
            )
            TrafficStore(settings.state_path / "serving" / "traffic.db").set(
                TrafficSplit(model=MODEL, champion=champion)
            )
            pid = start_server(
                procs,
                [sys.executable, "-m", "loopstack.serving.server"],
                work / f"server-{mode}.log",
                {**os.environ, **settings.as_env()},
            )
            targets[mode] = {"rest": (str(rest), pid), "grpc": (f"127.0.0.1:{grpc}", pid)}
        for mode in MODES:
            wait_ready(f"http://127.0.0.1:{targets[mode]['rest'][0]}/v2/models/{MODEL}/ready")
        results = measure_all(targets, opts.rounds, opts.seconds)
        results["load_average"] = os.getloadavg()
        results["in_process"] = in_process()
        write_results(results, "durable.json")
        table(results)
        in_process_table(results["in_process"])
    finally:
        stop_servers(procs)


def measure_all(
    targets: dict[str, dict[str, tuple[str, int]]], rounds: int, seconds: float
) -> dict[str, Any]:
    """Every (protocol, concurrency, mode) point, interleaved, as medians; and the on/off ratios."""
    samples: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    order = [(k, c, m) for c in CONCURRENCY for k in PROTOCOLS for m in MODES]
    for round_ in range(rounds):
        for kind, concurrency, mode in order[::-1] if round_ % 2 else order:
            target, pid = targets[mode][kind]
            point = measure(kind, target, concurrency, seconds, pid)
            samples.setdefault((kind, concurrency, mode), []).append(point)
    points = [
        {"protocol": k, "concurrency": c, "durable": m, **_median_point(samples[(k, c, m)])}
        for k, c, m in order
    ]
    by = {(p["protocol"], p["concurrency"], p["durable"]): p for p in points}
    ratios = [
        {
            "protocol": k,
            "concurrency": c,
            "throughput_ratio": by[(k, c, "on")]["rps"] / by[(k, c, "off")]["rps"],
            "p99_ratio": by[(k, c, "on")]["p99_ms"] / by[(k, c, "off")]["p99_ms"],
            "p99_added_ms": by[(k, c, "on")]["p99_ms"] - by[(k, c, "off")]["p99_ms"],
            "server_cpu_ratio": by[(k, c, "on")]["server_cpu_ms"]
            / by[(k, c, "off")]["server_cpu_ms"],
        }
        for k in PROTOCOLS
        for c in CONCURRENCY
    ]
    return {"seconds_per_point": seconds, "rounds": rounds, "points": points, "ratios": ratios}


def table(results: dict[str, Any]) -> None:
    """Print the points and the on/off ratios."""
    print(f"medians of {results['rounds']} rounds of {results['seconds_per_point']:g} s per point")
    print(f"{'proto':5} {'c':>3} {'durable':7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'cpu ms/req':>10}")  # fmt: skip
    for p in results["points"]:
        print(
            f"{p['protocol']:5} {p['concurrency']:>3} {p['durable']:7} {p['rps']:>8.0f} "
            f"{p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f} {p['server_cpu_ms']:>10.2f}"
        )
    print("\ndurable on / off")
    for r in results["ratios"]:
        print(
            f"{r['protocol']:5} c={r['concurrency']:<3} throughput {r['throughput_ratio']:.2f}  "
            f"p99 {r['p99_ratio']:.2f} (+{r['p99_added_ms']:.2f} ms)  "
            f"cpu/req {r['server_cpu_ratio']:.2f}"
        )
    print(f"load average during the run: {results['load_average']}")


def in_process(answers: int = 2000) -> dict[str, Any]:
    """Settle latency of lone answers, and answers per outbox write when many wait at once."""
    import asyncio
    import time

    from loopstack.core.events import Publisher, open_event_log
    from loopstack.core.settings import load_settings
    from loopstack.serving.eventsink import EventSink
    from loopstack.serving.metrics import ServingMetrics
    from prometheus_client import CollectorRegistry

    work = Path(tempfile.mkdtemp(prefix="bench-durable-sink-"))
    event_log = open_event_log(load_settings(project_dir=work, state_dir=work / "state"))
    writes = [0]

    class Counting(Publisher):
        def publish(self, topic: str, events: Any, *, validate: bool | None = None) -> None:
            writes[0] += 1
            super().publish(topic, events, validate=validate)

    publisher = Counting(event_log, work / "outbox.db")
    sink = EventSink(publisher, "bench", ServingMetrics(CollectorRegistry()), durable=True)
    data = {"prediction_id": "p", "model": MODEL, "version": "1", "route": "champion",
            "protocol": "v2-rest", "inputs": ROW, "outputs": {"prediction": 0.1},
            "status": "ok", "latency_ms": 1.0, "request_time": "2026-01-01T00:00:00Z"}  # fmt: skip
    serial = [0]

    async def answer() -> float:
        serial[0] += 1
        receipt = sink.receipt()
        pid = f"p-{serial[0]}"
        sink.emit("predictions", "prediction.v1", {**data, "prediction_id": pid},
                  event_id=pid, subject=MODEL, at=time.time(), receipt=receipt)  # fmt: skip
        started = time.perf_counter()
        await sink.settled(receipt)
        return time.perf_counter() - started

    async def run() -> dict[str, Any]:
        lone = sorted([await answer() for _ in range(answers // 4)])
        groups = {}
        for waiting in (1, 8, 64):
            writes[0] = 0
            for _ in range(answers // waiting):
                await asyncio.gather(*(answer() for _ in range(waiting)))
            groups[str(waiting)] = (answers // waiting) * waiting / writes[0]
        return {
            "lone_p50_ms": lone[len(lone) // 2] * 1000,
            "lone_p99_ms": lone[int(len(lone) * 0.99)] * 1000,
            "answers_per_write": groups,
        }

    try:
        return asyncio.run(run())
    finally:
        sink.close()
        publisher.close()
        event_log.close()


def in_process_table(found: dict[str, Any]) -> None:
    """Print the in-process figures."""
    print(
        f"\nin-process: an answer's event to its outbox commit, alone: p50 "
        f"{found['lone_p50_ms']:.2f} ms, p99 {found['lone_p99_ms']:.2f} ms"
    )
    per = ", ".join(f"{k} waiting: {v:.1f}" for k, v in found["answers_per_write"].items())
    print(f"answers per outbox write (group commit): {per}")


if __name__ == "__main__":
    main()
