"""The loop closes on a model the repository does not ship, from outcomes users send.

A user's project (`tests/own_model/project`: `seattle-weather`, the day's maximum temperature in
Seattle from the day's other readings; real NOAA data from the `vega-datasets` test dependency)
on a stack of its own, whose loop runs this model only (not the project's `seattle-sky`). The
first version trains on a label file of Jan-Apr 2012 only. May and June are replayed with their
event times as request times; their outcomes go back only through `loopstack feedback send`
(May, by prediction id) and `POST /v1/feedback` (June, by entity key and event time). A
retraining asked for through the CLI must then train on exactly those outcomes, and its
challenger must be decided (promoted or rolled back) on paired shadow answers of the summer days
replayed after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from loopstack.client import LoopstackClient
from loopstack.core.errors import NotFound
from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.loop.stats import MIN_EARLY_ROLLBACK_PAIRS

from tests.conftest import run_cli, running_stack, settings_from
from tests.own_model.data import CITY, MODEL, lay_out_project
from tests.own_model.stack import (
    finished_run,
    materialize_facts,
    project_env,
    train_first_version,
    wait,
)

# The scenario runs in the first test's setup: about 4 minutes on an idle 2-core machine, over
# 10 on a loaded one, past the suite's 900 s default.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

FIRST_WINDOW = (datetime(2012, 1, 1, tzinfo=UTC), datetime(2012, 5, 1, tzinfo=UTC))
"""The only labels kept as a file: the first training's history."""
FED_BACK = (datetime(2012, 5, 1, tzinfo=UTC), datetime(2012, 7, 1, tzinfo=UTC))
"""Replayed before the retraining; outcomes only as feedback (May by CLI, June by API)."""
BY_ENTITY_FROM = datetime(2012, 6, 1, tzinfo=UTC)
"""From here on, outcomes name the entity key and event time instead of the prediction id."""
SHADOW_LAST = datetime(2012, 9, 30, tzinfo=UTC)
"""The replay after the retraining stops here at the latest: a decision comes well before."""
INPUTS = ["month", "precipitation", "temp_min", "wind"]


@dataclass
class Replayed:
    """What the scenario did and what the stack recorded."""

    rows: pd.DataFrame
    first_run: dict[str, Any]
    retrain_run: dict[str, Any]
    fed_back: pd.DataFrame
    """Outcomes sent before the retraining: event_timestamp, inputs, temp_max, how."""
    after: pd.DataFrame
    """Days replayed after it: event_timestamp, temp_max, prediction_id, score (served)."""
    shadow: list[dict[str, Any]]
    """The challenger's shadow predictions, as `GET /v1/predictions` lists them."""
    history: dict[str, Any]


class _Driver:
    """Sends the replay: predictions to the inference server, outcomes through CLI and API."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        settings = settings_from(env)
        self.client = LoopstackClient.from_settings(settings)
        self.http = httpx.Client(
            base_url=f"http://{settings.host}:{settings.serving.rest_port}", timeout=30
        )

    def predict(self, row: dict[str, Any]) -> tuple[str, float]:
        """Score one day; its prediction id and the answer."""
        instance = {"city_id": CITY, **{f: _plain(row[f]) for f in INPUTS}}
        at = row["event_timestamp"].isoformat()
        answer = self.http.post(
            f"/v1/models/{MODEL}:predict",
            json={"instances": [instance], "parameters": {"request_time": at}},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return str(body["prediction_ids"][0]), float(body["predictions"][0])

    def send_by_cli(self, days: pd.DataFrame) -> None:
        path = self.workdir / f"outcomes-{days['event_timestamp'].iloc[0]:%Y%m%d}.csv"
        pd.DataFrame(
            {
                "prediction_id": days["prediction_id"],
                "outcome": days["temp_max"],
                "observed_at": [_iso(t + timedelta(days=1)) for t in days["event_timestamp"]],
            }
        ).to_csv(path, index=False)
        sent = run_cli(self.env, "feedback", "send", str(path))
        assert sent.returncode == 0, sent.stdout + sent.stderr

    def send_by_api(self, days: pd.DataFrame, by_entity: bool) -> None:
        items = []
        for row in days.to_dict(orient="records"):
            item: dict[str, Any] = {
                "outcome": row["temp_max"],
                "observed_at": _iso(row["event_timestamp"] + timedelta(days=1)),
            }
            if by_entity:
                item.update(model=MODEL, entity_key={"city_id": CITY},
                            event_time=_iso(row["event_timestamp"]))  # fmt: skip
            else:
                item["prediction_id"] = row["prediction_id"]
            items.append(item)
        answer = self.client.post("/v1/feedback", items)
        assert answer["accepted"] == len(items), answer

    def wait_joined(self, prediction_ids: list[str]) -> None:
        """Outcomes of a model are consumed in order: the last one joined means all were."""

        def joined() -> bool:
            try:
                found = self.client.get(f"/v1/predictions/{prediction_ids[-1]}")
            except NotFound:
                return False
            return found.get("outcome") is not None

        wait(f"the feedback consumer to join outcome of {prediction_ids[-1]}", joined)

    def history(self) -> dict[str, Any]:
        return self.client.get(f"/v1/models/{MODEL}/history")

    def close(self) -> None:
        self.client.close()
        self.http.close()


def _iso(moment: Any) -> str:
    return pd.Timestamp(moment).isoformat()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _between(rows: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    when = rows["event_timestamp"]
    return rows[(when >= start) & (when < end)].reset_index(drop=True)


def _phase(driver: _Driver) -> str:
    state = driver.history()["state"] or {}
    return str(state.get("phase", "idle"))


def _replay(
    driver: _Driver, rows: pd.DataFrame, block_days: int, send: Any, until: Any = None
) -> pd.DataFrame:
    """Predict each day of `rows`; every `block_days` send those days' outcomes and wait for
    them to be joined. Stop early once `until()` holds. Returns the days sent, with ids."""
    done = []
    for first in range(0, len(rows), block_days):
        days = rows.iloc[first : first + block_days].copy()
        answers = [driver.predict(r) for r in days.to_dict(orient="records")]
        days["prediction_id"] = [i for i, _ in answers]
        days["score"] = [score for _, score in answers]
        send(days)
        driver.wait_joined(list(days["prediction_id"]))
        done.append(days)
        if until is not None and until():
            break
    return pd.concat(done, ignore_index=True)


def _wait_offline(settings: Settings, count: int) -> None:
    """The consumer exports joined outcomes to the offline store on its next sweep: wait for
    all of them there, as training will read them."""
    from loopstack.features.errors import EmptyWindow
    from loopstack.features.training import training_frame

    spec = load_model_spec(settings.models_dir, MODEL)

    def exported() -> bool:
        try:
            return len(training_frame(settings, spec, *FED_BACK)) >= count
        except EmptyWindow:
            return False

    wait(f"{count} fed-back labels in the offline store", exported, timeout=60)


def _decided(driver: _Driver, version: str) -> bool:
    return any(
        d["kind"] in ("promoted", "rolled_back") and str(d["version"]) == version
        for d in driver.history()["decisions"]
    )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    """The whole scenario, once: first training, replay with feedback, retraining, shadow."""
    base = tmp_path_factory.mktemp("own-model")
    project = base / "project"
    rows = lay_out_project(project, FIRST_WINDOW)
    env = project_env(project, MODEL)
    with running_stack(env) as stack:
        settings = stack.settings
        driver = _Driver(env, base)
        try:
            materialize_facts(env)
            # The first version, on the label file's window; the loop makes it the champion.
            first_run = train_first_version(env, MODEL, FIRST_WINDOW)

            # May and June, each month's outcomes in one batch after its days: May by the CLI
            # (prediction ids), June by the API (entity key and event time).
            may = _replay(
                driver, _between(rows, FED_BACK[0], BY_ENTITY_FROM), 31, driver.send_by_cli
            )
            june = _replay(
                driver, _between(rows, BY_ENTITY_FROM, FED_BACK[1]), 30,
                lambda days: driver.send_by_api(days, by_entity=True),
            )  # fmt: skip
            before = pd.concat(
                [may.assign(how="cli"), june.assign(how="entity")], ignore_index=True
            )
            _wait_offline(settings, len(before))
            retrain = run_cli(env, "retrain", MODEL, "--reason", "test: train on fed-back outcomes")
            assert retrain.returncode == 0, retrain.stdout + retrain.stderr
            fired = wait(  # decisions are queued: the history may not hold it yet
                "the retraining's trigger_fired decision",
                lambda: [d for d in driver.history()["decisions"] if d["kind"] == "trigger_fired"],
            )
            retrain_run = finished_run(driver.client, fired[-1]["pipeline_run_id"])
            phase = wait(
                "the loop to take up the retraining",
                lambda: (p := _phase(driver)) != "training" and p,
            )
            assert phase == "shadow", (
                f"no shadow after the retraining: {driver.history()['decisions'][-3:]}"
            )
            challenger = str(driver.history()["state"]["challenger"])

            # Summer days until the challenger is decided, outcomes by prediction id via the API.
            after = _replay(
                driver, _between(rows, FED_BACK[1], SHADOW_LAST + timedelta(days=1)), 2,
                lambda days: driver.send_by_api(days, by_entity=False),
                until=lambda: _decided(driver, challenger),
            )  # fmt: skip
            wait(f"a decision on v{challenger}", lambda: _decided(driver, challenger), timeout=30)
            shadow = driver.client.get(
                "/v1/predictions", model=MODEL, version=challenger, route="shadow", limit=1000
            )["items"]
            yield Replayed(rows, first_run, retrain_run, before, after, shadow, driver.history())
        finally:
            driver.close()


def _training_set(run: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    folder = Path(run["run_dir"]) / "steps" / "training-set"
    meta = json.loads((folder / "meta.json").read_text())
    frame = pd.read_parquet(folder / "training_set.parquet")
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame, meta


def _labels(frame: pd.DataFrame) -> pd.DataFrame:
    """One comparable row per label: event time, request fields, target."""
    columns = ["event_timestamp", *INPUTS, "temp_max"]
    out = frame[columns].astype({c: "float64" for c in [*INPUTS, "temp_max"]})
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype(
        "datetime64[ns, UTC]"
    )
    return out.sort_values("event_timestamp").reset_index(drop=True)


def test_the_first_version_trains_on_the_label_file_only(replayed: Replayed) -> None:
    frame, meta = _training_set(replayed.first_run)
    expected = _between(replayed.rows, *FIRST_WINDOW)
    assert meta["rows"] == len(frame) == len(expected) == 121
    assert meta["labels"] | {"choice": None} == {
        "choice": None,
        "file": 121,
        "feedback": 0,
        "human": 0,
    }
    pd.testing.assert_frame_equal(_labels(frame), _labels(expected))


def test_the_retraining_trains_on_exactly_the_outcomes_fed_back_in_its_window(
    replayed: Replayed,
) -> None:
    run = replayed.retrain_run
    start = datetime.fromisoformat(run["params"]["start"]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(run["params"]["end"]).replace(tzinfo=UTC)
    # The loop's window ends at the latest labelled day of model time (2012-06-30), not today.
    assert FIRST_WINDOW[1] <= start < end <= FED_BACK[1], (start, end)
    frame, meta = _training_set(run)
    sent = _between(replayed.fed_back, start, end)
    assert len(sent) >= 50, f"only {len(sent)} outcomes were fed back in {start} .. {end}"
    assert set(sent["how"]) == {"cli", "entity"}  # both ways in, both in the set
    assert meta["rows"] == len(frame) == len(sent), (meta, len(sent))
    # Lineage: every label of the set came back as feedback, none from the file.
    assert (meta["labels"]["file"], meta["labels"]["feedback"]) == (0, len(sent)), meta
    # The offline store's bookkeeping (prediction ids, origins) never becomes a model input.
    assert sorted(meta["inputs"]) == sorted([*INPUTS, "latitude"]), meta["inputs"]
    assert not frame["event_timestamp"].duplicated().any(), "a fed-back label counted twice"
    pd.testing.assert_frame_equal(_labels(frame), _labels(sent))


def test_the_challenger_is_decided_on_paired_shadow_answers(replayed: Replayed) -> None:
    decisions = replayed.history["decisions"]
    run_id = replayed.retrain_run["run_id"]
    gate = next(d for d in decisions if d["kind"] in ("gate_passed", "gate_failed")
                and d["evidence"].get("pipeline_run_id") == run_id)  # fmt: skip
    assert gate["kind"] == "gate_passed", gate["reason"]
    version = str(gate["version"])
    shadowed = [d for d in decisions if d["kind"] == "traffic_changed"
                and d["evidence"].get("mode") == "shadow"
                and version in (d["traffic"] or {})]  # fmt: skip
    assert shadowed, f"v{version} never ran in shadow"
    # Out of shadow: to the first canary step (better), or rolled back (worse, or not better).
    decided = next(d for d in decisions[decisions.index(shadowed[0]) + 1 :]
                   if (d["kind"] == "rolled_back" and str(d["version"]) == version)
                   or (d["kind"] == "traffic_changed" and d["evidence"].get("mode") == "canary"
                       and version in (d["traffic"] or {})))  # fmt: skip
    evidence = decided["evidence"]
    assert evidence["test"] == "one-sided paired t-test on per-request squared error", evidence
    n = int(evidence["n"])
    if decided["kind"] == "rolled_back":
        assert n >= MIN_EARLY_ROLLBACK_PAIRS and f"{n} paired requests" in decided["reason"]
    else:
        assert n >= evidence["horizon"] and evidence["p_better"] < evidence["alpha"]
    # The pairs are the challenger's shadow answers and the champion's served answers to the
    # same requests, scored on the outcomes this test sent: recompute the losses from them.
    served = replayed.after.set_index("prediction_id")
    pairs = sorted((p for p in replayed.shadow if p["correlation"] in served.index),
                   key=lambda p: (p["request_time"], p["prediction_id"]))[:n]  # fmt: skip
    assert len(pairs) == n, f"{len(pairs)} shadow answers pair with served ones, evidence says {n}"
    truth = served.loc[[p["correlation"] for p in pairs], "temp_max"].to_numpy()
    champion = served.loc[[p["correlation"] for p in pairs], "score"].to_numpy()
    challenger = np.array([p["score"] for p in pairs], dtype=float)
    assert evidence["champion_loss"] == pytest.approx(np.mean((champion - truth) ** 2))
    assert evidence["challenger_loss"] == pytest.approx(np.mean((challenger - truth) ** 2))
