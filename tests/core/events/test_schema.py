"""The compiled validators: the fast split of `allOf` if/then rules decides like the schema."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import fastjsonschema
import pytest
from loopstack.core.events.schema import load_schema, split_conditionals, validator

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


def accepts(validate: Any, data: dict[str, Any]) -> bool:
    try:
        validate(data)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def variants(name: str, base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every mix of condition values (each allowed one, another string, a number, absent) and
    of required keys of the rules present or dropped."""
    _, rules = split_conditionals(load_schema(name))
    props = sorted({p for rule in rules for p, _ in rule.when})
    required = sorted({k for rule in rules for k in rule.required})
    choices: list[list[Any]] = [
        [
            *sorted({v for rule in rules for p, vs in rule.when if p == prop for v in vs}),
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
def test_split_validator_decides_like_the_whole_schema(name: str) -> None:
    whole = fastjsonschema.compile(load_schema(name))
    fast = validator(name)
    docs = variants(name, BASES[name])
    assert accepts(whole, BASES[name]) and accepts(fast, BASES[name])
    decisions = [(accepts(whole, d), accepts(fast, d)) for d in docs]
    assert all(a == b for a, b in decisions)
    assert {a for a, _ in decisions} == {True, False}  # the grid hits both outcomes


def test_rules_of_another_shape_stay_in_the_schema() -> None:
    schema = {
        "type": "object",
        "allOf": [
            {"if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}},
            {"if": {"properties": {"a": {"const": "x"}}}, "then": {"required": ["c"]}},
        ],
    }
    rest, rules = split_conditionals(schema)
    assert rest["allOf"] == schema["allOf"][:1]
    assert [(r.when, r.required) for r in rules] == [((("a", frozenset({"x"})),), ("c",))]
