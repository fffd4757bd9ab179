"""A model trained outside Loopstack is adopted, shadowed and promoted through the loop.

A user's project (`tests/own_model/project`: Seattle's daily maximum temperature, real NOAA data
from the `vega-datasets` test dependency) on a stack of its own, with no version trained by
Loopstack. Two scikit-learn Pipelines (StandardScaler + estimator) are fitted here, as in a
notebook, on Jan-Apr 2012 and logged with signatures into the stack's MLflow under an
experiment of their own: a mean predictor first, then a ridge regression. Both are registered
through `loopstack models register`: the first becomes the champion (no champion to gate
against), the second is gated against it on a holdout from the feature store, shadowed on
replayed days whose outcomes go back as feedback, stepped through the canary and promoted. A
model whose columns are not the spec's, and one without a signature, are refused first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.conftest import run_cli, running_stack
from tests.loop.test_own_model import _between, _decided, _Driver, _phase, _replay
from tests.own_model.data import MODEL, lay_out_project
from tests.own_model.stack import materialize_facts, project_env, wait

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

LABELLED = (datetime(2012, 1, 1, tzinfo=UTC), datetime(2012, 5, 1, tzinfo=UTC))
"""The label file's days: what the outside models are fitted on and the gate holds out from."""
REPLAY_LAST = datetime(2012, 9, 30, tzinfo=UTC)
AS_OF = "2012-05-01T00:00:00Z"
INPUTS = ["month", "precipitation", "temp_min", "wind", "latitude"]
LATITUDE = 47.61
EXPERIMENT = "notebook"
PLAIN = "seattle-plain"
"""The same target from the request alone: a model with no feature service."""
PLAIN_SPEC = """\
name: seattle-plain
task: regression
target: temp_max
entity: {name: city, join_key: city_id}
request_fields: [month, precipitation, temp_min, wind]
gate: {metric: mae}
training: {entrypoint: "train:build_estimator"}
trigger: {on_drift: false, on_quality: false}
"""


@dataclass
class Adopted:
    """What the scenario registered and what the stack recorded."""

    mismatch: Any
    unsigned: Any
    first: Any
    second: Any
    lineage: dict[str, Any]
    listed: Any
    history: dict[str, Any]
    champion: str
    plain: Any
    plain_answer: dict[str, Any]
    plain_joined: dict[str, Any]


def _frame(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The spec's inputs as the stack serves them (floats), and the target."""
    inputs = rows[INPUTS[:-1]].astype("float64").assign(latitude=LATITUDE)
    return inputs, rows["temp_max"]


def _log(pipeline: Any, inputs: pd.DataFrame, signature: bool = True) -> str:
    """Log a fitted pipeline under the notebook's experiment; its run id."""
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(inputs, pipeline.predict(inputs)) if signature else None,
        )
    return str(run.info.run_id)


def _register(env: dict[str, str], *args: str) -> Any:
    return run_cli(env, "models", "register", MODEL, *args, "--as-of", AS_OF, timeout=600)


@pytest.fixture(scope="module")
def adopted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adopted]:
    base = tmp_path_factory.mktemp("adopted-model")
    project = base / "project"
    rows = lay_out_project(project, LABELLED)
    spec = project / "models" / MODEL / "model.yaml"
    # A clear winner needs fewer pairs: effect 0.8 puts the paired test's horizon near 12 days.
    spec.write_text(spec.read_text().replace("effect_size: 0.5", "effect_size: 0.8"))
    (project / "models" / PLAIN).mkdir()
    (project / "models" / PLAIN / "model.yaml").write_text(PLAIN_SPEC)
    env = project_env(project, MODEL, PLAIN)
    with running_stack(env) as stack:
        driver = _Driver(env, base)
        try:
            materialize_facts(env)
            mlflow.set_tracking_uri(stack.settings.mlflow_tracking_uri)
            inputs, target = _frame(_between(rows, *LABELLED))

            # Refused: columns that are not the spec's, and no signature (uploaded as a folder).
            odd = inputs.drop(columns=["wind"]).assign(humidity=np.linspace(0.3, 0.9, len(inputs)))
            mismatch = _register(
                env, "--run", _log(make_pipeline(StandardScaler(), Ridge()).fit(odd, target), odd)
            )
            folder = base / "unsigned-model"
            mlflow.sklearn.save_model(
                make_pipeline(StandardScaler(), Ridge()).fit(inputs, target), str(folder)
            )
            unsigned = _register(env, "--path", str(folder))

            # The first version: no champion yet, so the loop makes it the champion.
            mean = make_pipeline(StandardScaler(), DummyRegressor()).fit(inputs, target)
            first = _register(env, "--run", _log(mean, inputs))
            assert first.returncode == 0, first.stdout + first.stderr
            wait(
                "the loop to deploy the first version",
                lambda: driver.http.get(f"/v2/models/{MODEL}/ready").status_code == 200,
            )
            # The second: gated against it on the label file's holdout, then shadowed.
            ridge = make_pipeline(StandardScaler(), Ridge()).fit(inputs, target)
            second = _register(env, "--run", _log(ridge, inputs), "--holdout-from",
                               "2012-01-01", "--holdout-to", "2012-05-01")  # fmt: skip
            assert second.returncode == 0, second.stdout + second.stderr
            phase = wait("the loop to shadow v2", lambda: (p := _phase(driver)) != "idle" and p)
            assert phase == "shadow", driver.history()["decisions"][-3:]
            _replay(
                driver, _between(rows, LABELLED[1], REPLAY_LAST + timedelta(days=1)), 2,
                lambda days: driver.send_by_api(days, by_entity=False),
                until=lambda: _decided(driver, "2"),
            )  # fmt: skip
            # Request fields only: adopted from a folder, served without a feature lookup, fed back.
            plain_folder = base / "plain-model"
            request_only = inputs.drop(columns=["latitude"])
            plain_model = make_pipeline(StandardScaler(), Ridge()).fit(request_only, target)
            mlflow.sklearn.save_model(plain_model, str(plain_folder), signature=infer_signature(
                request_only, plain_model.predict(request_only)))  # fmt: skip
            plain = run_cli(env, "models", "register", PLAIN, "--path", str(plain_folder),
                            "--as-of", AS_OF, timeout=600)  # fmt: skip
            assert plain.returncode == 0, plain.stdout + plain.stderr
            wait(
                "the loop to deploy the request-fields-only model",
                lambda: driver.http.get(f"/v2/models/{PLAIN}/ready").status_code == 200,
            )
            day = _between(rows, LABELLED[1], REPLAY_LAST).iloc[0]
            instance = {f: float(day[f]) for f in INPUTS[:-1]}
            answer = driver.http.post(
                f"/v1/models/{PLAIN}:predict",
                json={"instances": [instance], "parameters": {"request_time": AS_OF}},
            )
            assert answer.status_code == 200, answer.text
            plain_answer = answer.json()
            plain_id = str(plain_answer["prediction_ids"][0])
            driver.client.post("/v1/feedback", [{"prediction_id": plain_id,
                               "outcome": float(day["temp_max"]), "observed_at": AS_OF}])  # fmt: skip
            driver.wait_joined([plain_id])
            plain_joined = driver.client.get(f"/v1/predictions/{plain_id}")
            lineage = driver.client.get(f"/v1/models/{MODEL}/versions/2/lineage")
            listed = run_cli(env, "models", "list")
            champion = driver.client.get(f"/v1/models/{MODEL}")["aliases"]["champion"]
            yield Adopted(mismatch, unsigned, first, second, lineage, listed, driver.history(),
                          champion, plain, plain_answer, plain_joined)  # fmt: skip
        finally:
            driver.close()


def test_a_signature_that_is_not_the_specs_is_refused_with_the_columns_named(
    adopted: Adopted,
) -> None:
    out = adopted.mismatch.stdout + adopted.mismatch.stderr
    assert adopted.mismatch.returncode != 0, out
    assert "missing column(s) ['wind']" in out, out
    assert "extra column(s) ['humidity']" in out, out


def test_a_model_without_a_signature_is_refused_with_the_fix(adopted: Adopted) -> None:
    out = adopted.unsigned.stdout + adopted.unsigned.stderr
    assert adopted.unsigned.returncode != 0, out
    assert "no signature" in out and "infer_signature" in out, out


def test_the_first_adopted_version_passes_without_a_champion(adopted: Adopted) -> None:
    out = adopted.first.stdout
    assert "registered version 1" in out and "no champion yet" in out, out


def test_the_second_is_gated_against_the_champion_on_a_feature_store_holdout(
    adopted: Adopted,
) -> None:
    gate = adopted.lineage["lineage"]["gate"]
    assert gate["passed"], gate
    assert gate["reason"].startswith("mae ") and "vs champion v1" in gate["reason"], gate
    assert "it is the challenger" in adopted.second.stdout, adopted.second.stdout
    gated = next(d for d in adopted.history["decisions"]
                 if d["kind"] == "gate_passed" and str(d["version"]) == "2")  # fmt: skip
    # The last 20% of the 121 labelled days, as the train pipeline holds out.
    assert gated["evidence"]["holdout_rows"] == 25, gated["evidence"]
    assert gated["evidence"]["metrics"]["mae"] < gated["evidence"]["champion"]["metrics"]["mae"]


def test_lineage_says_what_is_known_and_what_is_not(adopted: Adopted) -> None:
    lineage = adopted.lineage["lineage"]
    origin = lineage["origin"]
    assert origin["trained"] == "trained outside Loopstack"
    assert origin["source"]["kind"] == "run"
    assert origin["flavour"] == "sklearn"
    assert [c["name"] for c in origin["signature"]["inputs"]] == INPUTS
    assert origin["registered_by"].startswith("api:")
    assert "training data" in origin["not_known"] and "code (git sha)" in origin["not_known"]
    assert lineage["git_sha"] == "not known: trained outside Loopstack"
    # The version is a copy under the stack's own experiment: the notebook's run may go.
    assert mlflow.get_run(adopted.lineage["run_id"]).info.experiment_id == (
        mlflow.get_experiment_by_name("loopstack-adopted").experiment_id  # type: ignore[union-attr]
    )


def test_it_is_shadowed_canaried_and_promoted_by_the_loop(adopted: Adopted) -> None:
    decisions = adopted.history["decisions"]
    mine = [d for d in decisions if "2" in (d.get("traffic") or {}) or str(d["version"]) == "2"]
    modes = [d["evidence"].get("mode") for d in mine if d["kind"] == "traffic_changed"]
    assert modes[0] == "shadow" and "canary" in modes, modes
    promoted = next(d for d in mine if d["kind"] == "promoted")
    assert promoted["evidence"]["actor"] == "loop", promoted
    assert adopted.champion == "2"


def test_models_list_shows_versions_made_outside(adopted: Adopted) -> None:
    assert adopted.listed.returncode == 0, adopted.listed.stderr
    line = next(x for x in adopted.listed.stdout.splitlines() if MODEL in x)
    assert "outside" in line, adopted.listed.stdout


def test_a_model_with_request_fields_only_is_adopted_served_and_fed_back(adopted: Adopted) -> None:
    assert "no champion yet" in adopted.plain.stdout, adopted.plain.stdout
    prediction = float(adopted.plain_answer["predictions"][0])
    assert -10 < prediction < 40, adopted.plain_answer  # a day's maximum in Seattle, in °C
    assert adopted.plain_joined["outcome"] is not None, adopted.plain_joined
    line = next(x for x in adopted.listed.stdout.splitlines() if PLAIN in x)
    assert "outside" in line, adopted.listed.stdout
