"""Replay labelled history hour by hour through the serving endpoint, outcomes a day later.

The replayed rows come from the model's replay file when it has one (`REPLAY_FILES`: the whole
year, while the files Feast trains from end with the first model's window, so a retraining can
learn later hours only from the outcomes sent back here), else from its label file. The clock is simulated: each request carries its hour as `request_time`, so every consumer and
the loop see 2011, not today. While a retraining runs the clock stops (training takes no
simulated time). For a model with a feature feed (the hourly demand lags) the app sends the
hour's lags itself with the entity key, as its own counts feed knows them (each built from
counts up to H-1h, as in training); other models' features come from the online store by key. Requests of one
block of hours go out together; each hour's outcome is sent by prediction id a day later, and
the clock waits until the feedback consumer has joined them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from loopstack.client import LoopstackClient
from loopstack.core.errors import LoopstackError, NotFound, Unavailable
from loopstack.core.modelspec import ModelSpec

__all__ = [
    "FEATURE_FEEDS",
    "REPLAY_FILES",
    "Progress",
    "Replay",
    "feature_feed",
    "labelled_history",
]

OUTCOME_DELAY = timedelta(days=1)
BLOCK_HOURS = 6
"""Hours sent together; between blocks the replay asks whether the loop is retraining."""
CONCURRENCY = 4
TRAINING_WAIT_S = 900
"""A retraining takes under a minute here; one running past this is stuck."""
FEEDBACK_WAIT_S = 120
"""The feedback consumer joins a day's outcomes in about a second here; one slower is stuck."""
REPLAY_FILES = {"bike-demand": "bike_demand_replay.parquet"}
"""Models whose replayed year is a file of its own under `feature_repo/data/` (label rows with
the features the app knows at each hour), kept apart from the files Feast trains from."""
FEATURE_FEEDS = {
    "bike-demand": ("bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d")
}
"""Models whose app knows time-dependent features itself: the replay file's columns it sends."""


def labelled_history(feature_repo: Path, spec: ModelSpec) -> pd.DataFrame:
    """The rows the replay sends (its replay file, else `<model>_labels.parquet`), in time order."""
    name = REPLAY_FILES.get(spec.name, f"{spec.name.replace('-', '_')}_labels.parquet")
    frame = pd.read_parquet(feature_repo / "data" / name).sort_values(
        "event_timestamp", kind="stable"
    )
    return frame.reset_index(drop=True)


def feature_feed(feature_repo: Path, spec: ModelSpec) -> dict[Any, dict[str, Any]] | None:
    """The model's feature feed: feature values by event time (None: features come from Feast)."""
    columns = FEATURE_FEEDS.get(spec.name)
    if columns is None:
        return None
    frame = labelled_history(feature_repo, spec)[["event_timestamp", *columns]]
    return {
        row["event_timestamp"]: {
            k: (None if pd.isna(v) else _plain(v)) for k, v in row.items() if k in columns
        }
        for row in frame.to_dict(orient="records")
    }


@dataclass
class Progress:
    """What the replay shows while it runs."""

    day: datetime | None = None
    requests: int = 0
    failed: int = 0
    outcomes: int = 0
    phase: str = "idle"
    paused_s: float = 0.0
    sabotaged: bool = False
    notes: list[str] = field(default_factory=list)


class Replay:
    """Drives one model's replay against a running stack."""

    def __init__(
        self,
        client: LoopstackClient,
        serving_url: str,
        spec: ModelSpec,
        rows: pd.DataFrame,
        *,
        pace_s: float = 0.25,
        feed: dict[Any, dict[str, Any]] | None = None,
        sabotage_at: datetime | None = None,
        on_day: Callable[[Progress], None] | None = None,
    ) -> None:
        self.client = client
        self.http = httpx.Client(base_url=serving_url, timeout=30.0)
        self.spec = spec
        self.rows = rows
        self.pace_s = pace_s
        self.feed = feed
        self.sabotage_at = sabotage_at
        self.on_day = on_day or (lambda _p: None)
        self.progress = Progress()
        self._due: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def run(self, start: datetime, end: datetime) -> Progress:
        """Replay [start, end): requests per hour, outcomes a day later, a day per step."""
        frame = self.rows[
            (self.rows["event_timestamp"] >= start) & (self.rows["event_timestamp"] < end)
        ]
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="replay") as pool:
            for day, group in frame.groupby(frame["event_timestamp"].dt.floor("D"), sort=True):
                self.progress.day = day.to_pydatetime()
                block = group["event_timestamp"].dt.hour // BLOCK_HOURS
                for _, hours in group.groupby(block, sort=True):
                    self._wait_for_training()
                    list(pool.map(self._predict, hours.to_dict(orient="records")))
                self._send_outcomes(day.to_pydatetime() + timedelta(days=1))
                self._maybe_sabotage(day.to_pydatetime())
                self.on_day(self.progress)
                if self.pace_s:
                    time.sleep(self.pace_s)
        self._send_outcomes(None)
        return self.progress

    def _predict(self, row: dict[str, Any]) -> None:
        key = self.spec.entity.join_key
        instance = {f: _plain(row[f]) for f in self.spec.request_fields}
        at = row["event_timestamp"]
        # The entity is named either way: its outcomes become its training labels (and, for a
        # feed, its lag rows); with a feed, the app's values are used as sent.
        instance[key] = _plain(row[key])
        if self.feed is not None:
            instance.update(self.feed.get(at, {}))
        body = {"instances": [instance], "parameters": {"request_time": at.isoformat()}}
        response = self.http.post(f"/v1/models/{self.spec.name}:predict", json=body)
        with self._lock:
            self.progress.requests += 1
            if response.status_code != 200:
                self.progress.failed += 1
                return
            self._due.append({
                "model": self.spec.name, "prediction_id": response.json()["prediction_ids"][0],
                "outcome": _plain(row[self.spec.target]),
                "observed_at": (at + OUTCOME_DELAY).isoformat(),
            })  # fmt: skip

    def _send_outcomes(self, until: datetime | None) -> None:
        """Send the outcomes observed by `until` (all of them when None)."""
        limit = None if until is None else until.isoformat()
        due = [o for o in self._due if limit is None or o["observed_at"] <= limit]
        if not due:
            return
        sent = {id(o) for o in due}
        self._due = [o for o in self._due if id(o) not in sent]
        self.client.post("/v1/feedback", due)
        self.progress.outcomes += len(due)
        self._wait_for_feedback(due[-1]["prediction_id"])

    def _wait_for_feedback(self, prediction_id: str) -> None:
        """Hold the clock until the feedback consumer has joined the outcomes just sent.

        Outcomes of a model are consumed in order, so the last one joined means all were; the
        loop's quality signals then follow the simulated time whatever the machine's speed (a
        replay that ran ahead would let a retraining start days late, on stale data).
        """
        started = time.monotonic()
        while True:
            try:
                if self.client.get(f"/v1/predictions/{prediction_id}").get("outcome"):
                    return
            except NotFound:
                pass  # the prediction itself is not consumed yet
            if time.monotonic() - started > FEEDBACK_WAIT_S:
                raise Unavailable(
                    f"the feedback consumer has not joined outcome {prediction_id} after "
                    f"{FEEDBACK_WAIT_S} s: see logs/feedback.log in the demo's state directory"
                )
            time.sleep(0.05)

    def _state(self) -> dict[str, Any]:
        history = self.client.get(f"/v1/models/{self.spec.name}/history", limit=1)
        return history["state"] or {"phase": "idle"}

    def _wait_for_training(self) -> None:
        """Stop the simulated clock while the model is retrained."""
        started = time.monotonic()
        while (phase := self._state()["phase"]) == "training":
            if time.monotonic() - started > TRAINING_WAIT_S:
                raise Unavailable(
                    f"a retraining of {self.spec.name} has run for over {TRAINING_WAIT_S} s: "
                    "see logs/loop.log and `loopstack pipeline runs` in the demo's state directory"
                )
            self.progress.phase = "training (clock stopped)"
            self.on_day(self.progress)
            time.sleep(0.25)
        self.progress.phase = phase
        self.progress.paused_s += time.monotonic() - started

    def _maybe_sabotage(self, day: datetime) -> None:
        """Once past `sabotage_at`, start one broken retraining the controller is not told about."""
        if self.sabotage_at is None or self.progress.sabotaged or day < self.sabotage_at:
            return
        try:
            self.client.post(
                f"/v1/models/{self.spec.name}/retrain",
                {"reason": "demo: a training run whose labels were shuffled",
                 "params": {"sabotage": "shuffle-labels"}},
            )  # fmt: skip
        except LoopstackError:
            return  # a retraining or rollout is in flight: try again tomorrow
        self.progress.sabotaged = True
        self.progress.notes.append(f"{day.date()}: started a sabotaged retraining")

    def close(self) -> None:
        """Close the HTTP connection."""
        self.http.close()


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (numpy types to Python)."""
    return value.item() if hasattr(value, "item") else value
