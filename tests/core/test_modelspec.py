"""Model specs: every shipped spec validates; bad specs get errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopstack.core.errors import InvalidInput, NotFound
from loopstack.core.modelspec import list_model_specs, load_model_spec, scan_model_specs

MODELS = Path(__file__).resolve().parents[2] / "models"

VALID = """
name: toy
task: regression
target: y
entity: {name: thing, join_key: thing_id}
feature_service: toy_v1
gate: {metric: rmse}
training: {entrypoint: "train:build_estimator"}
"""


def test_shipped_specs_validate() -> None:
    specs = list_model_specs(MODELS)
    assert {s.name for s in specs} >= {"bike-demand", "credit-default"}
    for spec in specs:
        assert spec.rollout.canary_steps[-1] == 100


def test_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "model.yaml").write_text(VALID)
    with pytest.raises(NotFound, match="known models: toy"):
        load_model_spec(tmp_path, "nope")


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ("task: clustering", "task"),
        ("rollout: {canary_steps: [50, 10]}", "canary_steps"),
        ("surprise: 1", "surprise"),
        ("name: other", "rename"),
    ],
)
def test_invalid_specs_say_what_is_wrong(tmp_path: Path, patch: str, reason: str) -> None:
    key = patch.split(":")[0]
    lines = [line for line in VALID.splitlines() if not line.startswith(f"{key}:")]
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "model.yaml").write_text("\n".join([*lines, patch]))
    with pytest.raises(InvalidInput, match=reason):
        load_model_spec(tmp_path, "toy")


def test_a_broken_spec_is_reported_and_the_others_still_list(tmp_path: Path) -> None:
    for name, text in {
        "toy": VALID,
        "bad-yaml": "name: [bad\n",
        "bad-field": VALID.replace("name: toy", "name: bad-field") + "task: clustering\n",
        "not-a-mapping": "- a\n",
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.yaml").write_text(text)
    specs, broken = scan_model_specs(tmp_path)
    assert [s.name for s in specs] == ["toy"]
    assert set(broken) == {"bad-yaml", "bad-field", "not-a-mapping"}
    assert "line 2, column 1" in broken["bad-yaml"] and "^" not in broken["bad-yaml"]
    assert "task: Input should be 'regression' or 'classification'" in broken["bad-field"]
    assert "\n" not in broken["bad-field"] and "errors.pydantic.dev" not in broken["bad-field"]
    assert "mapping" in broken["not-a-mapping"]
    with pytest.raises(InvalidInput, match="bad-field"):
        list_model_specs(tmp_path)  # the strict listing still refuses
