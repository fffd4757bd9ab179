"""Feedback join benchmark: outcomes joined per second through the real consumer path.

Run from the project root::

    uv run python bench/bench_feedback.py [--n 5000] [--window 200]

Writes N credit-default predictions (champion/canary) and N outcomes (by prediction id, in
prediction order shuffled within blocks of 500, as late labels come back) into a fresh SQLite event log, then times the feedback consumer draining them:
log poll -> CloudEvents decode + schema validation -> `ConsumerRunner` exactly-once
transaction -> `FeedbackProjector` join -> windows closed with every metric by segment ->
SQLite read model. The in-run baseline parses the same event bytes into two DataFrames and
joins them with one `pandas.merge` in this process (no durability, no windows, no exactly-once).
Prints the figures and writes `bench/results/feedback.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from loopstack.core.events import Event, OutMessage, open_event_log
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.modelspec import QualitySpec, load_model_spec
from loopstack.core.settings import load_settings
from loopstack.monitoring.feedback import ModelCatalog, QualityQueries, ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer

PROJECT_DIR = Path(__file__).resolve().parents[1]
DATA = PROJECT_DIR / "feature_repo" / "data"
RESULTS = PROJECT_DIR / "bench" / "results" / "feedback.json"


def events(n: int, seed: int = 1) -> tuple[list[bytes], list[bytes]]:
    """N prediction and N outcome events (serialized)."""
    labels = pd.read_parquet(DATA / "credit_default_labels.parquet")
    customers = pd.read_parquet(DATA / "credit_customers.parquet")
    frame = labels.merge(customers[["customer_id", "student", "balance"]], on="customer_id")
    rng = np.random.default_rng(seed)
    preds, outs = [], []
    for i in range(n):
        row = frame.iloc[i % len(frame)]
        y = int(row["default"])
        p = float(np.clip(0.1 + 0.6 * y + rng.normal(0, 0.25), 0.01, 0.99))
        version, route = ("4", "canary") if i % 5 == 0 else ("3", "champion")
        pid = f"p-{i}"
        preds.append(
            Event.create(
                "prediction.v1",
                {
                    "prediction_id": pid,
                    "model": "credit-default",
                    "version": version,
                    "route": route,
                    "protocol": "v2-rest",
                    "inputs": {},
                    "status": "ok",
                    "latency_ms": 2.0,
                    "features": {
                        "values": {"student": row["student"], "balance": float(row["balance"])}
                    },
                    "outputs": {"prediction": int(p >= 0.5), "probabilities": [1 - p, p]},
                    "entity_key": {"customer_id": int(row["customer_id"])},
                    "request_time": f"2026-11-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
                },
                source="bench",
                subject="credit-default",
            ).to_json()
        )
        outs.append(
            Event.create(
                "outcome.v1",
                {
                    "prediction_id": pid,
                    "model": "credit-default",
                    "value": y,
                    "observed_at": "2026-11-02T00:00:00Z",
                    "source": "system",
                },
                source="bench",
                subject="credit-default",
            ).to_json()
        )
    # Outcomes come back roughly in prediction order: shuffled within blocks of 500.
    shuffler = random.Random(seed)
    blocks = [outs[i : i + 500] for i in range(0, len(outs), 500)]
    for block in blocks:
        shuffler.shuffle(block)
    return preds, [o for block in blocks for o in block]


def consumer_path(
    preds: list[bytes], outs: list[bytes], window: int, folder: Path
) -> dict[str, Any]:
    """Time the real consumer draining the log into an SQLite read model."""
    settings = load_settings(
        project_dir=PROJECT_DIR,
        state_dir=folder,
        events={"backend": "sqlite", "partitions": 4, "batch_size": 500},
        feedback={"read_model_url": f"sqlite:///{folder / 'read_model.db'}", "push_sources": {}},
    )
    log = open_event_log(settings)
    key = "credit-default"
    log.append([OutMessage(PREDICTIONS, key, v) for v in preds])
    log.append([OutMessage(OUTCOMES, key, v) for v in outs])
    spec = load_model_spec(PROJECT_DIR / "models", "credit-default")
    spec = spec.model_copy(update={"quality": QualitySpec(window_size=window)})
    read_model = ReadModel.from_settings(settings)
    consumer = FeedbackConsumer(
        settings, log, read_model, catalog=ModelCatalog(specs={"credit-default": spec})
    )
    start = time.perf_counter()
    consumer.drain(idle_polls=1, timeout=0.05)
    seconds = time.perf_counter() - start
    joined = len(QualityQueries(read_model).joined("credit-default"))
    windows = len(QualityQueries(read_model).quality("credit-default")["windows"])
    consumer.close()
    read_model.close()
    log.close()
    return {"seconds": seconds, "joined": joined, "windows": windows}


def pandas_baseline(preds: list[bytes], outs: list[bytes]) -> dict[str, Any]:
    """Parse the same bytes and join with one pandas merge."""
    start = time.perf_counter()
    p = pd.DataFrame([orjson.loads(v)["data"] for v in preds])
    o = pd.DataFrame([orjson.loads(v)["data"] for v in outs])
    joined = p[["prediction_id", "version", "route"]].merge(
        o[["prediction_id", "value"]], on="prediction_id", how="inner"
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "joined": len(joined)}


def main() -> None:
    """Run both paths and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000)
    parser.add_argument("--window", type=int, default=200)
    args = parser.parse_args()
    preds, outs = events(args.n)
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
        real = consumer_path(preds, outs, args.window, Path(tmp))
    base = pandas_baseline(preds, outs)
    assert real["joined"] == base["joined"] == args.n, (real, base)
    real_rate = args.n / real["seconds"]
    base_rate = args.n / base["seconds"]
    result = {
        "benchmark": "feedback join: outcomes joined per second",
        "n_predictions": args.n,
        "n_outcomes": args.n,
        "window_size": args.window,
        "consumer": {
            **real,
            "outcomes_per_s": round(real_rate, 1),
            "events_per_s": round(2 * args.n / real["seconds"], 1),
        },
        "baseline_pandas_merge": {**base, "outcomes_per_s": round(base_rate, 1)},
        "ratio_consumer_to_baseline": round(real_rate / base_rate, 4),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "notes": "consumer: SQLite log (4 partitions) -> ConsumerRunner (batch 500, exactly-once)"
        " -> projector -> SQLite read model, windows with all metrics by segment;"
        " baseline: orjson parse + one pandas merge in memory.",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
