"""A served model's input columns (from its MLflow signature): tensor metadata and validation.

Requests are normalised to columns (`name -> one value per row`) before they reach the model,
whatever the protocol; this module checks them against the signature and builds the frame.
A request may instead carry its rows positionally (one `[N, F]` tensor, or v1 rows as lists),
in signature order: a `Matrix`, split into columns here, where the order is known.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopstack.serving.errors import BadRequest

__all__ = ["Column", "Columns", "Matrix", "ModelSchema", "NullableFields", "V2_NUMERIC"]

Columns = dict[str, list[Any]]
"""Column name -> one value per row (the normalised form of every request)."""

# MLflow signature type -> (OIP v2 datatype, kind the validator checks, pandas dtype).
_TYPES: dict[str, tuple[str, str, str]] = {
    "double": ("FP64", "float", "float64"),
    "float": ("FP32", "float", "float32"),
    "long": ("INT64", "int", "float64"),
    "integer": ("INT32", "int", "float64"),
    "boolean": ("BOOL", "bool", "object"),
    "string": ("BYTES", "str", "object"),
}
V2_NUMERIC = frozenset(
    {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    }
)
_ACCEPTED: dict[str, frozenset[str]] = {
    "float": V2_NUMERIC,
    "int": V2_NUMERIC - {"FP16", "FP32", "FP64"},
    "bool": frozenset({"BOOL"}),
    "str": frozenset({"BYTES"}),
}


@dataclass(slots=True)
class Matrix:
    """Rows sent positionally, in signature order: one `[N, F]` tensor or v1 rows as lists."""

    name: str
    """The tensor's name (any name: clients call it `input-0`, `input`...), or `instances`."""
    values: np.ndarray | list[list[Any]]
    """A 2-D numeric array (checked at once, column by column), or rows of JSON values."""
    datatype: str | None = None
    """A v2 tensor's (always numeric); None for v1 rows, which may hold text."""


class NullableFields:
    """Each model's `nullable_fields`, from `models/<name>/model.yaml` (read once each)."""

    def __init__(self, models_dir: Path | None) -> None:
        self._dir = models_dir
        self._lock = threading.Lock()
        self._known: dict[str, frozenset[str]] = {}

    def of(self, model: str) -> frozenset[str]:
        """The model's nullable inputs (none for a model without a readable spec)."""
        known = self._known.get(model)  # the per-request path: no lock once read
        if known is not None:
            return known
        with self._lock:
            if model not in self._known:
                self._known[model] = self._read(model)
            return self._known[model]

    def _read(self, model: str) -> frozenset[str]:
        if self._dir is None or not model:
            return frozenset()
        from loopstack.core.modelspec import load_model_spec

        try:
            return frozenset(load_model_spec(self._dir, model).nullable_fields)
        except Exception:  # no spec (a model adopted without one) or a broken one: none
            return frozenset()


@dataclass(frozen=True)
class Column:
    """One input column of the model."""

    name: str
    mlflow_type: str
    datatype: str
    kind: str
    dtype: str


def _show(value: Any) -> str:
    """A value as an error message quotes it: a long one (a list, a text) is cut."""
    try:
        text = repr(value)
    except RecursionError:  # a list nested deeper than Python's repr goes
        return f"a {type(value).__name__} nested too deep to show"
    return text if len(text) <= 80 else f"{text[:80]}…[+{len(text) - 80} chars]"


def _null(column: Column, row: int, what: str) -> BadRequest:
    return BadRequest(
        f"field {column.name!r} row {row} is {what}; send a number, or list {column.name!r} in "
        "the model spec's `nullable_fields` to pass missing values to the model as NaN"
    )


def _check_value(column: Column, row: int, value: Any, nullable: bool = False) -> Any:
    """Return the value as the model reads it, or raise BadRequest naming column and row.

    A null or NaN number is refused unless the column is nullable (the model then gets NaN): a
    model that never saw a gap answers garbage for one, or fails with a 500. Infinity never
    passes: no tabular model reads it."""
    kind = column.kind
    if value is None:
        if kind in ("float", "int"):
            if nullable:
                return math.nan
            raise _null(column, row, "null")
        return None
    if kind == "float" or kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(
                f"field {column.name!r} expects a number ({column.datatype}); row {row} has "
                f"{_show(value)} ({type(value).__name__})"
            )
        number = float(value)
        if not math.isfinite(number):
            if math.isnan(number):
                if nullable:
                    return number
                raise _null(column, row, "NaN")
            raise BadRequest(f"field {column.name!r} row {row} is {number}; send a finite number")
        if kind == "int" and not number.is_integer():
            raise BadRequest(
                f"field {column.name!r} expects an integer ({column.datatype}); row {row} has {_show(value)}"
            )
        return number
    if kind == "bool":
        if not isinstance(value, bool):
            raise BadRequest(
                f"field {column.name!r} expects true/false; row {row} has {_show(value)}"
            )
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise BadRequest(f"field {column.name!r} row {row} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise BadRequest(
            f"field {column.name!r} expects a string; row {row} has {_show(value)} ({type(value).__name__})"
        )
    return value


class ModelSchema:
    """Input columns of a model version, in signature order."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)
        self.by_name = {c.name: c for c in self.columns}
        self._integer = np.array([c.kind == "int" for c in self.columns], dtype=bool)
        self._names = [c.name for c in self.columns]
        self._text = [c.name for c in self.columns if c.kind not in ("float", "int")]
        """Inputs an [N, F] numeric tensor cannot carry."""

    @classmethod
    def from_signature(cls, inputs: Any, model: str) -> ModelSchema:
        """Build from an MLflow `Schema` of named columns (`signature.inputs`)."""
        from loopstack.serving.errors import UnsupportedModel

        if inputs is None or not inputs.has_input_names():
            raise UnsupportedModel(
                f"{model}: the signature has no named input columns; log it with "
                "`signature=infer_signature(frame, ...)` on a DataFrame"
            )
        columns = []
        for spec in inputs.inputs:
            type_name = str(getattr(spec.type, "name", spec.type))
            if type_name not in _TYPES:
                raise UnsupportedModel(
                    f"{model}: input {spec.name!r} has type {type_name!r}; supported: {', '.join(_TYPES)}"
                )
            datatype, kind, dtype = _TYPES[type_name]
            columns.append(Column(spec.name, type_name, datatype, kind, dtype))
        return cls(columns)

    def tensors(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """OIP v2 metadata of the input tensors: one `[-1]` tensor per column."""
        chosen = self.columns if names is None else [self.by_name[n] for n in names]
        return [{"name": c.name, "datatype": c.datatype, "shape": [-1]} for c in chosen]

    def input_forms(self) -> dict[str, str]:
        """v2 metadata `parameters` saying how rows may also be sent positionally: the column
        order of an `[N, F]` tensor and of v1 list rows (OIP parameters are scalars)."""
        order = ",".join(c.name for c in self.columns)
        width = len(self.columns)
        text = self._text
        matrix = (
            f"one tensor of any name, shape [-1, {width}], FP32/FP64/INT*/UINT*, columns in "
            "input_order"
            if not text
            else f"not accepted: {', '.join(text)} not numeric; send one tensor per input"
        )
        return {"input_order": order, "input_matrix": matrix}

    def split(self, matrix: Matrix, nullable: Collection[str] = ()) -> tuple[Columns, bool]:
        """Columns of positional rows, and whether they are checked already (a numeric array is
        checked here in one pass per column; JSON rows go through `check` value by value)."""
        names = self._names
        values = matrix.values
        numeric = isinstance(values, np.ndarray) and values.dtype.kind in "fiu"
        if self._text and (numeric or matrix.datatype is not None):
            raise BadRequest(
                f"input {matrix.name!r} is a numeric [N, F] tensor, but the model also "
                f"reads {', '.join(self._text)} (not numeric); send one tensor per input"
            )
        if numeric:
            assert isinstance(values, np.ndarray)
            if values.shape[1] != len(names):
                raise self._width(matrix.name, values.shape[1])
            return self._check_array(values, nullable), True
        rows = values.tolist() if isinstance(values, np.ndarray) else values
        try:  # transposed in C; a row of another width makes either zip raise
            return dict(zip(names, map(list, zip(*rows, strict=True)), strict=True)), False
        except (TypeError, ValueError):
            pass
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(names):
                raise self._width(matrix.name, len(row) if isinstance(row, list) else 1, i)
        raise BadRequest(f"input {matrix.name!r}: every row must be a list of values")

    def _width(self, name: str, got: int | None, row: int | None = None) -> BadRequest:
        where = f"input {name!r}" + (f" row {row}" if row is not None else "")
        return BadRequest(
            f"{where} has {got} value(s) per row; the model reads {len(self.columns)}, in this "
            f"order: {', '.join(c.name for c in self.columns)}"
        )

    def _check_array(self, array: np.ndarray, nullable: Collection[str]) -> Columns:
        """A numeric `[N, F]` array's columns as the model reads them (floats), the same rules as
        `_check_value`, applied a column at a time."""
        floats = array.astype(np.float64, copy=False)
        if array.dtype.kind != "f":  # integer arrays hold nothing to refuse
            return dict(zip(self.by_name, floats.T.tolist(), strict=True))
        finite = np.isfinite(floats)
        bad = None if finite.all() else ~finite
        if bad is not None and nullable:
            gaps = np.array([c.name in nullable for c in self.columns])
            bad &= ~(np.isnan(floats) & gaps)
        if self._integer.any():
            fractional = finite & (floats != np.floor(floats)) & self._integer
            bad = fractional if bad is None else bad | fractional
        if bad is not None and bad.any():  # the first bad value, worded as `_check_value` does
            row, j = (int(i) for i in np.argwhere(bad)[0])
            column = self.columns[j]
            _check_value(column, row, float(floats[row, j]), column.name in nullable)
        return dict(zip(self.by_name, floats.T.tolist(), strict=True))

    def check_datatype(self, name: str, datatype: str) -> None:
        """Reject a v2 tensor whose declared datatype cannot carry the column's values."""
        column = self.by_name.get(name)
        if column is not None and datatype not in _ACCEPTED[column.kind]:
            raise BadRequest(
                f"input {name!r} has datatype {datatype}; the model expects {column.datatype}"
            )

    def check(
        self,
        columns: Mapping[str, Sequence[Any]],
        rows: int,
        nullable: Collection[str] = (),
        checked_already: Collection[str] = (),
    ) -> Columns:
        """Validate complete columns (no missing, no extra, one value per row), in signature
        order, each value as the model reads it (numbers as floats: the frame's dtypes).

        `nullable`: columns whose null or NaN reaches the model as NaN (else a 400 names them);
        `checked_already`: columns `split` checked from a numeric array (taken as they are)."""
        missing = [c.name for c in self.columns if c.name not in columns]
        extra = sorted(name for name in columns if name not in self.by_name)
        if missing or extra:
            reasons = []
            if missing:
                reasons.append(f"missing field(s) {', '.join(missing)}")
            if extra:
                reasons.append(f"unknown field(s) {', '.join(extra)}")
            raise BadRequest(
                "; ".join(reasons) + f" (the model reads {', '.join(c.name for c in self.columns)})"
            )
        checked: Columns = {}
        for column in self.columns:
            values = columns[column.name]
            if len(values) != rows:
                raise BadRequest(
                    f"field {column.name!r} has {len(values)} value(s) for {rows} row(s)"
                )
            if column.name in checked_already:
                checked[column.name] = list(values)
                continue
            gaps = column.name in nullable
            checked[column.name] = [_check_value(column, i, v, gaps) for i, v in enumerate(values)]
        return checked

    def build(self, checked: Columns) -> pd.DataFrame:
        """The model's input frame of checked columns (of one request or a batch of them)."""
        return pd.DataFrame(
            {c.name: np.asarray(checked[c.name], dtype=c.dtype) for c in self.columns}, copy=False
        )

    def frame(
        self, columns: Mapping[str, Sequence[Any]], rows: int, nullable: Collection[str] = ()
    ) -> pd.DataFrame:
        """Validate complete columns into the model's input frame (`check`, then `build`)."""
        return self.build(self.check(columns, rows, nullable))
