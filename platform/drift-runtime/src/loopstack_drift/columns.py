"""Column-oriented tables on the wire: validate them and encode them as float matrices.

A table is `{"columns": {name: [value, ...]}}` (see PROTOCOL.md). Numeric columns hold JSON
numbers only; categorical columns hold strings, integers or booleans and are encoded with the
codes the reference sample fixed, so a window is encoded exactly like the reference. Long
categories become digests and the distinct categories of a feature are capped (`Limits`), so
neither a long value nor many distinct ones can blow up an encoding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopstack_drift.errors import InvalidRequest, RequestTooLarge
from loopstack_drift.limits import OTHER, Limits

__all__ = ["Category", "Schema", "parse_table"]

# A categorical value as it travels in JSON and in the bundle's meta.json.
Category = str | int | bool

_NUMERIC_TYPES = {int, float}


def parse_table(payload: object, what: str, limits: Limits | None = None) -> dict[str, list[Any]]:
    """Check that `payload` is `{"columns": {name: [values]}}` with equal lengths and within
    `limits` (RequestTooLarge naming the limit otherwise); return the columns."""
    limits = limits or Limits()
    if not isinstance(payload, dict) or not isinstance(payload.get("columns"), dict):
        raise InvalidRequest(f'{what} must be an object {{"columns": {{name: [value, ...]}}}}')
    extra = sorted(set(payload) - {"columns"})
    if extra:
        raise InvalidRequest(f"{what} has unknown fields {extra}; only 'columns' is allowed")
    columns: dict[str, Any] = payload["columns"]
    if not columns:
        raise InvalidRequest(f"{what} has no columns")
    if len(columns) > limits.max_columns:
        raise RequestTooLarge(
            f"{what} has {len(columns)} columns; this server accepts at most "
            f"{limits.max_columns} (--max-columns)"
        )
    for name, values in columns.items():
        if not isinstance(values, list):
            raise InvalidRequest(f"{what}: column {name!r} must be a list of values")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidRequest(f"{what}: columns have different lengths {lengths}")
    n_rows = next(iter(lengths.values()))
    if n_rows > limits.max_rows:
        raise RequestTooLarge(
            f"{what} has {n_rows} rows; this server accepts at most {limits.max_rows} "
            "(--max-rows): send a sample"
        )
    return columns


def _describe(value: object) -> str:
    if value is None:
        return "null"
    text = repr(value)
    # An error answer must not echo a 10 MB value back.
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


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


def _category(name: str, row: int, value: Any, limits: Limits) -> Category:
    """Normalise one categorical value: 2.0 and 2 are the same category, a long string its digest."""
    kind = type(value)
    if kind is str:
        return limits.category(value)
    if kind is int or kind is bool:
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


def _reference_categories(name: str, values: list[Any], limits: Limits) -> tuple[Category, ...]:
    """A reference column's categories in code order, the rarest folded into `OTHER` past the cap."""
    counts = Counter(_code_key(_category(name, r, v, limits)) for r, v in enumerate(values))
    keys = list(counts)
    if len(keys) > limits.max_categories:
        keys = [k for k, _ in counts.most_common(limits.max_categories - 1)]
        keys.append(_code_key(OTHER))
    return tuple(k[1] for k in sorted(set(keys), key=lambda k: (k[0], str(k[1]))))


class _Codes:
    """Codes of one column: the reference's, then fresh ones for unseen categories, capped."""

    def __init__(self, categories: Sequence[Category], max_new: int) -> None:
        self._codes = {_code_key(c): i for i, c in enumerate(categories)}
        # A folded reference: any value it does not list may be one of its rare ones.
        self._other = self._codes.get(_code_key(OTHER))
        self._fresh = max_new

    def code(self, key: tuple[str, Category]) -> int:
        found = self._codes.get(key)
        if found is not None:
            return found
        if self._other is not None:
            return self._other
        if self._fresh <= 0:
            # Past the cap every unseen category shares one cell: the counts stay bounded.
            key = _code_key(OTHER)
            found = self._codes.get(key)
            if found is not None:
                return found
        # A category the reference never saw gets a fresh code: the chi-squared test then
        # counts it as its own cell, which is exactly the drift we want to see.
        self._fresh -= 1
        self._codes[key] = len(self._codes)
        return self._codes[key]


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
        limits: Limits | None = None,
    ) -> Schema:
        """Fix the schema from a reference sample; raise InvalidRequest naming a bad column.

        A categorical feature with more than `limits.max_categories` distinct values keeps the
        most frequent ones and folds the rest into `OTHER` (`encode` then maps every value it
        does not know to `OTHER`: a rare reference value cannot be told from a new one).
        """
        limits = limits or Limits()
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
                categories[name] = _reference_categories(name, columns[name], limits)
        return cls(features=tuple(features), categories=categories, prediction=prediction)

    def encode(
        self, columns: Mapping[str, list[Any]], limits: Limits | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Encode a table as (features matrix, prediction vector or None), checking its columns."""
        limits = limits or Limits()
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
                matrix[:, j] = self._encode_categorical(name, columns[name], limits)
            else:
                matrix[:, j] = numeric_column(name, columns[name])
        prediction = None
        if self.prediction is not None and self.prediction in columns:
            prediction = numeric_column(self.prediction, columns[self.prediction])
        return matrix, prediction

    def _encode_categorical(self, name: str, values: list[Any], limits: Limits) -> np.ndarray:
        codes = _Codes(self.categories[name], limits.max_categories)
        if set(map(type, values)) == {str}:
            # The common case: encode each distinct label once. Never `np.asarray(values)`: a
            # fixed-width string array takes 4 bytes x the LONGEST value x every row (one 10 MB
            # value in 1,000 rows asked for 40 GB).
            table = {
                label: codes.code(("str", limits.category(label))) for label in sorted(set(values))
            }
            return np.fromiter(map(table.__getitem__, values), np.float64, len(values))
        out = np.empty(len(values), dtype=np.float64)
        for row, value in enumerate(values):
            out[row] = codes.code(_code_key(_category(name, row, value, limits)))
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
