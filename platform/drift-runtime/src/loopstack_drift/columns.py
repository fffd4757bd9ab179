"""Column-oriented tables on the wire: validate them and encode them as float matrices.

A table is `{"columns": {name: [value, ...]}}` (see PROTOCOL.md). Numeric columns hold JSON
numbers only; categorical columns hold strings, integers or booleans and are encoded with the
codes the reference sample fixed, so a window is encoded exactly like the reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopstack_drift.errors import InvalidRequest

__all__ = ["Category", "Schema", "parse_table"]

# A categorical value as it travels in JSON and in the bundle's meta.json.
Category = str | int | bool

_NUMERIC_TYPES = {int, float}


def parse_table(payload: object, what: str) -> dict[str, list[Any]]:
    """Check that `payload` is `{"columns": {name: [values]}}` with equal lengths; return the columns."""
    if not isinstance(payload, dict) or not isinstance(payload.get("columns"), dict):
        raise InvalidRequest(f'{what} must be an object {{"columns": {{name: [value, ...]}}}}')
    extra = sorted(set(payload) - {"columns"})
    if extra:
        raise InvalidRequest(f"{what} has unknown fields {extra}; only 'columns' is allowed")
    columns: dict[str, Any] = payload["columns"]
    if not columns:
        raise InvalidRequest(f"{what} has no columns")
    for name, values in columns.items():
        if not isinstance(values, list):
            raise InvalidRequest(f"{what}: column {name!r} must be a list of values")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidRequest(f"{what}: columns have different lengths {lengths}")
    return columns


def _describe(value: object) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _first_bad(values: Sequence[Any], allowed: set[type]) -> tuple[int, Any]:
    for row, value in enumerate(values):
        if type(value) not in allowed:
            return row, value
    raise AssertionError("no bad value")  # pragma: no cover - callers checked there is one


def numeric_column(name: str, values: list[Any]) -> np.ndarray:
    """A numeric column as float64; booleans, strings and nulls are caller mistakes."""
    # `set(map(type, ...))` is one C-speed pass; `np.asarray` alone would accept "1" and True.
    if not set(map(type, values)) <= _NUMERIC_TYPES:
        row, value = _first_bad(values, _NUMERIC_TYPES)
        raise InvalidRequest(
            f"column {name!r} is numeric but row {row} is {_describe(value)}; send numbers only "
            "(list the column in 'categorical' at fit time if it holds labels)"
        )
    try:
        array = np.asarray(values, dtype=np.float64)
    except OverflowError as exc:
        raise InvalidRequest(f"column {name!r} has an integer too large for float64") from exc
    if not np.isfinite(array).all():
        raise InvalidRequest(f"column {name!r} has a value too large for float64")
    return array


def _category(name: str, row: int, value: Any) -> Category:
    """Normalise one categorical value: 2.0 and 2 are the same category."""
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return value  # type: ignore[no-any-return]
    if kind is float and float(value).is_integer():
        return int(value)
    raise InvalidRequest(
        f"column {name!r} is categorical but row {row} is {_describe(value)}; "
        "send strings, integers or booleans"
    )


def _code_key(value: Category) -> tuple[str, Category]:
    # Keyed with the type so True and 1 (equal, same hash in Python) stay distinct categories.
    return (type(value).__name__, value)


@dataclass(frozen=True)
class Schema:
    """Which columns a detector reads, which are categorical, and their reference categories."""

    features: tuple[str, ...]
    categories: Mapping[str, tuple[Category, ...]]
    """Categorical feature → its reference categories; a category's code is its position."""
    prediction: str | None = None

    @classmethod
    def infer(
        cls,
        columns: Mapping[str, list[Any]],
        features: Sequence[str] | None,
        categorical: Iterable[str],
        prediction: str | None,
    ) -> Schema:
        """Fix the schema from a reference sample; raise InvalidRequest naming a bad column."""
        if prediction is not None and prediction not in columns:
            raise InvalidRequest(f"prediction column {prediction!r} is not in the reference")
        if features is None:
            features = [name for name in columns if name != prediction]
        if not features:
            raise InvalidRequest(
                "no feature columns: send at least one column besides the prediction"
            )
        if len(set(features)) != len(features):
            raise InvalidRequest(f"features list a column twice: {list(features)}")
        if prediction in features:
            raise InvalidRequest(
                f"column {prediction!r} cannot be both a feature and the prediction"
            )
        missing = [name for name in features if name not in columns]
        if missing:
            raise InvalidRequest(f"features {missing} are not columns of the reference")
        extra = sorted(set(columns) - set(features) - {prediction})
        if extra:
            raise InvalidRequest(
                f"reference has columns {extra} that are neither features nor the prediction"
            )
        categorical = list(categorical)
        unknown = [name for name in categorical if name not in features]
        if unknown:
            raise InvalidRequest(f"categorical columns {unknown} are not features")
        categories: dict[str, tuple[Category, ...]] = {}
        for name in features:
            if name in categorical:
                seen = {
                    _code_key(c): c
                    for c in (_category(name, r, v) for r, v in enumerate(columns[name]))
                }
                categories[name] = tuple(
                    seen[k] for k in sorted(seen, key=lambda k: (k[0], str(k[1])))
                )
        return cls(features=tuple(features), categories=categories, prediction=prediction)

    def encode(self, columns: Mapping[str, list[Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        """Encode a table as (features matrix, prediction vector or None), checking its columns."""
        missing = [name for name in self.features if name not in columns]
        if missing:
            raise InvalidRequest(
                f"missing feature columns {missing}; expected {list(self.features)}"
            )
        allowed = set(self.features) | ({self.prediction} if self.prediction else set())
        extra = sorted(set(columns) - allowed)
        if extra:
            raise InvalidRequest(f"unexpected columns {extra}; expected {sorted(allowed)}")
        n_rows = len(columns[self.features[0]])
        matrix = np.empty((n_rows, len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            if name in self.categories:
                matrix[:, j] = self._encode_categorical(name, columns[name])
            else:
                matrix[:, j] = numeric_column(name, columns[name])
        prediction = None
        if self.prediction is not None and self.prediction in columns:
            prediction = numeric_column(self.prediction, columns[self.prediction])
        return matrix, prediction

    def _encode_categorical(self, name: str, values: list[Any]) -> np.ndarray:
        codes = {_code_key(c): i for i, c in enumerate(self.categories[name])}
        if set(map(type, values)) == {str}:
            # The common case, vectorised: encode each distinct label once (10k rows: ~2 ms).
            labels, inverse = np.unique(np.asarray(values), return_inverse=True)
            table = np.array([codes.setdefault(("str", str(v)), len(codes)) for v in labels])
            return table[inverse].astype(np.float64)
        out = np.empty(len(values), dtype=np.float64)
        for row, value in enumerate(values):
            key = _code_key(_category(name, row, value))
            # A category the reference never saw gets a fresh code: the chi-squared test then
            # counts it as its own cell, which is exactly the drift we want to see.
            out[row] = codes.setdefault(key, len(codes))
        return out

    def to_json(self) -> dict[str, Any]:
        """The schema as stored in a bundle's meta.json."""
        return {
            "features": list(self.features),
            "categories": {name: list(values) for name, values in self.categories.items()},
            "prediction": self.prediction,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schema:
        """Rebuild a schema from `to_json` output."""
        return cls(
            features=tuple(data["features"]),
            categories={name: tuple(values) for name, values in data["categories"].items()},
            prediction=data.get("prediction"),
        )
