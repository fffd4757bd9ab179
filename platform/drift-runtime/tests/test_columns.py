"""Schema inference and encoding of column tables."""

from __future__ import annotations

import pytest
from loopstack_drift.columns import Schema, parse_table
from loopstack_drift.errors import InvalidRequest


def test_categories_keep_their_reference_codes_and_new_ones_get_fresh_codes() -> None:
    ref = {"x": [1.0, 2.0, 3.0], "c": ["b", "a", "b"]}
    schema = Schema.infer(ref, None, ["c"], None)
    assert schema.categories == {"c": ("a", "b")}
    matrix, pred = schema.encode({"x": [0, 1], "c": ["b", "zzz"]})
    assert matrix.tolist() == [[0.0, 1.0], [1.0, 2.0]]
    assert pred is None


def test_true_and_one_are_different_categories() -> None:
    schema = Schema.infer({"c": [1, True, 1.0]}, None, ["c"], None)
    assert sorted(map(repr, schema.categories["c"])) == ["1", "True"]


def test_schema_round_trips_through_json() -> None:
    schema = Schema.infer({"x": [1.0, 2.0], "c": [3, 4], "p": [0.1, 0.2]}, None, ["c"], "p")
    assert Schema.from_json(schema.to_json()) == schema


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"x": [1.0, "2"]}, "row 1 is str '2'"),
        ({"x": [True, 2.0]}, "row 0 is bool True"),
        ({"x": [None, 2.0]}, "row 0 is null"),
        ({"x": [10**400, 1.0]}, "too large"),
    ],
)
def test_bad_numeric_values_name_column_and_row(
    columns: dict[str, list[object]], message: str
) -> None:
    schema = Schema(features=("x",), categories={})
    with pytest.raises(InvalidRequest, match=message):
        schema.encode(columns)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"cols": {}},
        {"columns": {}},
        {"columns": {"x": 1}},
        {"columns": {"x": [1], "y": [1, 2]}},
    ],
)
def test_malformed_tables_are_refused(payload: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_table(payload, "window")
