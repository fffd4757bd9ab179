"""The compiled validators decide like the reference implementation (`jsonschema`), rules included."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import jsonschema
import pytest
from loopstack.core.events.errors import SchemaViolation
from loopstack.core.events.schema import load_schema, validate_data

from tests.core.events.helpers import NOW, prediction

BASES: dict[str, dict[str, Any]] = {
    "prediction.v1": {**prediction(), "error": "boom"},
    "inference.result.v1": {
        "correlation_id": "c",
        "model": "churn",
        "status": "ok",
        "outputs": {"prediction": 1},
        "error": "timeout",
    },
    "decision.v1": {
        "model": "churn",
        "kind": "traffic_changed",
        "version": "4",
        "versions": {"champion": "3", "candidate": "4"},
        "reason": "canary healthy",
        "evidence": {"accuracy": 0.84},
        "traffic": {"3": 90, "4": 10},
        "alias": "champion",
    },
    "drift.v1": {
        "model": "churn",
        "version": "3",
        "window_start": NOW,
        "window_end": NOW,
        "sample_size": 500,
        "kind": "feature",
        "status": "ok",
        "drifted": True,
        "features": [{"feature": "tenure", "statistic": 0.31, "p_value": 0.001, "drifted": True}],
    },
}


def accepts(name: str, data: dict[str, Any]) -> bool:
    try:
        validate_data(name, data)
    except SchemaViolation:
        return False
    return True


def rules(name: str) -> list[tuple[dict[str, list[Any]], list[str]]]:
    """The `allOf` if/then rules of a schema: (property -> values that trigger, required keys)."""
    out = []
    for item in load_schema(name).get("allOf", []):
        when = {
            prop: [sub["const"]] if "const" in sub else list(sub["enum"])
            for prop, sub in item["if"]["properties"].items()
        }
        out.append((when, list(item["then"]["required"])))
    return out


def variants(name: str, base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every mix of condition values (each allowed one, another string, a number, absent) and
    of required keys of the rules present or dropped."""
    found = rules(name)
    props = sorted({p for when, _ in found for p in when})
    required = sorted({k for _, keys in found for k in keys})
    choices: list[list[Any]] = [
        [
            *sorted({v for when, _ in found for v in when.get(prop, [])}),
            "x",
            1,
            None,
        ]
        for prop in props
    ]
    out = []
    for values in itertools.product(*choices):
        for dropped in itertools.product([False, True], repeat=len(required)):
            doc = copy.deepcopy(base)
            for prop, value in zip(props, values, strict=True):
                if value is None:
                    doc.pop(prop, None)
                else:
                    doc[prop] = value
            for key, drop in zip(required, dropped, strict=True):
                if drop:
                    doc.pop(key, None)
            out.append(doc)
    return out


@pytest.mark.parametrize("name", sorted(BASES))
def test_validator_decides_like_the_reference_implementation(name: str) -> None:
    reference = jsonschema.Draft7Validator(
        load_schema(name), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    docs = variants(name, BASES[name])
    assert reference.is_valid(BASES[name]) and accepts(name, BASES[name])
    decisions = [(reference.is_valid(d), accepts(name, d)) for d in docs]
    assert all(a == b for a, b in decisions)
    assert {a for a, _ in decisions} == {True, False}  # the grid hits both outcomes


def test_a_violation_names_where_it_is() -> None:
    with pytest.raises(SchemaViolation, match=r"data\.route: .*sideways"):
        validate_data("prediction.v1", {**prediction(), "route": "sideways"})
    with pytest.raises(SchemaViolation, match=r"data\.request_time: .*date-time"):
        validate_data("prediction.v1", {**prediction(), "request_time": "yesterday"})
