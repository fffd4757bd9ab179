"""Bounds on what a drift window or reference holds, whatever the logged values.

Prediction events can carry anything a producer logged (the KServe logger's bodies, events
written before serving cut long strings, a raised limit), so the drift side bounds its own
memory: a row keeps only scalar fields, a string longer than `drift.category_max_chars` becomes
`sha256:<16 hex>` of its UTF-8 (the drift runtime's `limits.digest`, the same rule, so both
sides agree), and the distinct categories of a feature are capped by folding into `<other>`.
docs/robustness.md ("Drift memory") states the figures.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from loopstack.core.settings import DriftSettings

__all__ = ["OTHER", "Bounds", "bound_reference", "category_key", "digest", "fold"]

OTHER = "<other>"
"""The category rare and overflowing values are folded into (the detector server's too)."""

_MAX_FIELD_NAME = 256


def digest(value: str) -> str:
    """`sha256:` and the first 16 hex digits of the SHA-256 of `value`'s UTF-8."""
    data = value.encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def category_key(value: Any) -> tuple[str, Any]:
    """A category as the detector server tells them apart: `True` and `1` differ, `2.0` is `2`."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return (type(value).__name__, value)


@dataclass(frozen=True)
class Bounds:
    """The drift settings that bound a window (see `DriftSettings`)."""

    category_max_chars: int = 64
    max_categories: int = 200
    max_window_rows: int = 10_000
    max_reference_rows: int = 50_000
    max_row_bytes: int = 32_768

    @classmethod
    def from_settings(cls, drift: DriftSettings) -> Bounds:
        """The bounds these settings set."""
        return cls(
            category_max_chars=drift.category_max_chars,
            max_categories=drift.max_categories,
            max_window_rows=drift.max_window_rows,
            max_reference_rows=drift.max_reference_rows,
            max_row_bytes=drift.max_row_bytes,
        )

    def value(self, value: Any) -> Any:
        """A scalar as a window keeps it: long strings as their digest, lists and objects as null
        (no detector reads them)."""
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str):
            return value if len(value) <= self.category_max_chars else digest(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        return None

    def row(self, row: Mapping[str, Any]) -> str | None:
        """The row with bounded values as stored JSON, or None when that is longer than
        `max_row_bytes`.

        Field names longer than 256 characters are dropped: no model input is named like that.
        """
        if len(row) > self.max_row_bytes // 4:  # '"":0' is the shortest field: too wide anyway
            return None
        bounded = {str(k): self.value(v) for k, v in row.items() if len(str(k)) <= _MAX_FIELD_NAME}
        data = orjson.dumps(bounded, option=orjson.OPT_SERIALIZE_NUMPY)
        return data.decode() if len(data) <= self.max_row_bytes else None


def fold(values: Sequence[Any], reference: Iterable[Any] | None, max_categories: int) -> list[Any]:
    """A categorical column with its unseen categories capped.

    Categories of the reference are kept. When the reference itself was folded (it lists
    `OTHER`), every value it does not list becomes `OTHER`: a rare reference value cannot be
    told from a new one. Otherwise the `max_categories` most frequent unseen values are kept
    and the rest become `OTHER`, so the server's table is at most reference + cap + 1 cells.
    """
    known = {category_key(c) for c in reference or ()}
    if category_key(OTHER) in known:
        return [v if category_key(v) in known else OTHER for v in values]
    unseen = Counter(category_key(v) for v in values if category_key(v) not in known)
    if len(unseen) <= max_categories:
        return list(values)
    kept = known | {k for k, _ in unseen.most_common(max_categories)}
    return [v if category_key(v) in kept else OTHER for v in values]


def bound_reference(
    frame: pd.DataFrame, categorical: Sequence[str], bounds: Bounds, seed: int = 0
) -> pd.DataFrame:
    """A drift reference within `bounds`: at most `max_reference_rows` rows (a seeded sample,
    in index order), long categories as their digest, at most `max_categories` per
    categorical column (the rarest folded into `OTHER`)."""
    if len(frame) > bounds.max_reference_rows:
        frame = frame.sample(n=bounds.max_reference_rows, random_state=seed).sort_index()
    frame = frame.copy()
    for name in categorical:
        values = [bounds.value(v) for v in frame[name].astype(object).tolist()]
        counts = Counter(category_key(v) for v in values)
        if len(counts) > bounds.max_categories:
            kept = {k for k, _ in counts.most_common(bounds.max_categories - 1)}
            values = [v if category_key(v) in kept else OTHER for v in values]
        frame[name] = pd.Series(values, index=frame.index, dtype=object)
    return frame
