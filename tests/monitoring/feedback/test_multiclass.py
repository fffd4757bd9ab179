"""Classifiers of three or more classes in feedback: outcomes checked against the model's classes
at intake, windows scored with accuracy, macro-F1 and log-loss on the logged class
probabilities, a racing bad outcome ignored at the join, and the rollout's per-request losses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from loopstack.core.errors import InvalidInput, Unavailable
from loopstack.core.events import Event, EventLog
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.settings import Settings
from loopstack.loop.evidence import RolloutEvidence
from loopstack.monitoring.feedback import ModelCatalog
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.intake import OutcomeIntake
from loopstack.monitoring.feedback.queries import QualityQueries
from loopstack.monitoring.feedback.store import ReadModel
from sklearn import metrics as skm
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression

from tests.monitoring.feedback.builders import T0, outcome_event, prediction_event, spec
from tests.monitoring.feedback.conftest import Clock
from tests.monitoring.feedback.test_join import append

WINE = ["barolo", "grignolino", "barbera"]
SIZE = 20


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, topic: str, events: Any) -> None:
        self.events.extend(events)


def _catalog(recorded: Callable[[str], list[Any] | None] = lambda model: None) -> ModelCatalog:
    credit = spec("credit-default", window_size=SIZE)
    return ModelCatalog(
        specs={
            "wine": credit.model_copy(update={"name": "wine", "classes": WINE}),
            "unlisted": credit.model_copy(update={"name": "unlisted", "classes": None}),
            "credit-default": credit,
            "bike-demand": spec("bike-demand"),
        },
        recorded_classes=recorded,
    )


def _intake(catalog: ModelCatalog, known: dict[str, str] | None = None) -> OutcomeIntake:
    return OutcomeIntake(_Sink(), catalog, (known or {}).get)


def _item(outcome: Any, **extra: Any) -> dict[str, Any]:
    return {
        "prediction_id": "p1",
        "outcome": outcome,
        "observed_at": "2026-11-01T12:00:00Z",
        **extra,
    }


def test_intake_checks_outcomes_against_the_models_classes() -> None:
    intake = _intake(_catalog({"unlisted": [3, 5, 7]}.get), known={"p1": "wine"})
    assert intake.event_for(_item("barbera")).data["value"] == "barbera"
    with pytest.raises(
        InvalidInput,
        match="'hail' is not a class of model 'wine': allowed values "
        "are 'barolo', 'grignolino', 'barbera'",
    ):
        intake.event_for(_item("hail"))  # the model comes from the stored prediction
    # No classes in the spec: the champion's recorded classes; "5" is the class 5.
    assert intake.event_for(_item("5", model="unlisted")).data["value"] == 5
    with pytest.raises(InvalidInput, match="allowed values are 3, 5, 7"):
        intake.event_for(_item(4, model="unlisted"))
    # Neither: 0/1, where `yes` is no class but a JSON boolean is.
    bare = _intake(_catalog())
    assert bare.event_for(_item("1", model="unlisted")).data["value"] == 1
    assert bare.event_for(_item(True, model="credit-default")).data["value"] == 1
    for bad in ("yes", 5, 0.5):
        with pytest.raises(InvalidInput, match="allowed values are 0, 1"):
            bare.event_for(_item(bad, model="credit-default"))
    # Regression: a finite number.
    for bad in ("many", "nan", float("inf"), "yes", True):
        with pytest.raises(InvalidInput, match="not a number"):
            bare.event_for(_item(bad, model="bike-demand"))
    assert bare.event_for(_item(12.5, model="bike-demand")).data["value"] == 12.5

    # The registry away: the champion's classes are unknown, so the join checks the outcome.
    def away(model: str) -> list[Any] | None:
        raise Unavailable("MLflow does not answer")

    assert (
        _intake(_catalog(away)).event_for(_item("rain", model="unlisted")).data["value"] == "rain"
    )
    # A prediction not stored yet names no model: a label passes, the join checks it.
    assert bare.event_for(_item("barbera")).data["value"] == "barbera"
    with pytest.raises(InvalidInput, match="number or a label"):
        bare.event_for(_item({"class": "barbera"}))


def _wine_answers(n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    data = load_wine(as_frame=True)
    names = np.asarray(["barolo", "grignolino", "barbera"])
    target = names[data.target.to_numpy()]
    order = np.random.default_rng(3).permutation(len(target))
    train, test = order[:60], order[60 : 60 + n]
    model = LogisticRegression(max_iter=5000).fit(data.data.iloc[train], target[train])
    weak = LogisticRegression(max_iter=5).fit(data.data.iloc[train][["ash"]], target[train])
    column = {c: i for i, c in enumerate(model.classes_)}
    reorder = [column[c] for c in WINE]
    strong_p = model.predict_proba(data.data.iloc[test])[:, reorder]
    weak_p = weak.predict_proba(data.data.iloc[test][["ash"]])[:, reorder]
    return list(target[test]), strong_p, weak_p


def _answer(pid: str, version: str, route: str, i: int, proba: np.ndarray, **kw: Any) -> Event:
    outputs = {
        "prediction": WINE[int(proba.argmax())],
        "probabilities": {c: float(p) for c, p in zip(WINE, proba, strict=True)},
    }
    return prediction_event(
        pid,
        "wine",
        version,
        route,
        T0 + timedelta(minutes=i),
        outputs,
        {"ash": 2.0},
        {"customer_id": i},
        **kw,
    )


def test_multiclass_windows_losses_and_a_racing_bad_outcome(
    settings: Settings, event_log: EventLog, read_model: ReadModel, clock: Clock
) -> None:
    truth, strong, weak = _wine_answers(2 * SIZE)
    served = [_answer(f"w{i}", "1", "champion", i, strong[i]) for i in range(len(truth))]
    shadow = [
        _answer(f"w{i}-s", "2", "shadow", i, weak[i], correlation=f"w{i}")
        for i in range(len(truth))
    ]
    outcomes = [outcome_event(y, pid=f"w{i}", model="wine") for i, y in enumerate(truth)]
    # Sent by id before its prediction was stored: intake could not check it.
    racing = outcome_event("hail", pid="w0", source="human", observed_at=T0 + timedelta(days=1))
    consumer = FeedbackConsumer(settings, event_log, read_model, catalog=_catalog(), clock=clock)
    append(event_log, OUTCOMES, [racing])
    consumer.drain()
    append(event_log, PREDICTIONS, served + shadow)
    append(event_log, OUTCOMES, outcomes)
    consumer.drain()
    consumer.close()

    windows = QualityQueries(read_model).quality("wine")["windows"]
    champion = [w for w in windows if w["route"] == "champion"]
    assert [w["window"] for w in champion] == [0, 1]
    for w in champion:
        rows = slice(w["window"] * SIZE, (w["window"] + 1) * SIZE)
        y, p = truth[rows], strong[rows]
        hard = np.asarray(WINE)[p.argmax(axis=1)]
        m = w["metrics"]
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, hard))
        assert m["macro_f1"] == pytest.approx(skm.f1_score(y, hard, average="macro"))
        assert m["log_loss"] == pytest.approx(
            skm.log_loss([WINE.index(c) for c in y], p, labels=[0, 1, 2])
        )
        assert m["count"] == SIZE  # "hail" labelled nothing: w0 kept its real outcome

    pairs = RolloutEvidence(read_model.engine).pairs("wine", "classification", "1", "2")
    index = np.asarray([WINE.index(c) for c in truth])
    rows = np.arange(len(truth))
    assert pairs.champion == pytest.approx(-np.log(strong[rows, index]))
    assert pairs.challenger == pytest.approx(-np.log(weak[rows, index]))
    assert pairs.challenger.mean() > pairs.champion.mean()
