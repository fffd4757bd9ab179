"""A served model's input columns (from its MLflow signature): tensor metadata and validation.

Requests are normalised to columns (`name -> one value per row`) before they reach the model,
whatever the protocol; this module checks them against the signature and builds the frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopstack.serving.errors import BadRequest

__all__ = ["Column", "ModelSchema", "V2_NUMERIC", "Columns"]

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


@dataclass(frozen=True)
class Column:
    """One input column of the model."""

    name: str
    mlflow_type: str
    datatype: str
    kind: str
    dtype: str


def _check_value(column: Column, row: int, value: Any) -> Any:
    """Return the value as the model reads it, or raise BadRequest naming column and row."""
    kind = column.kind
    if value is None:
        if kind in ("float", "int"):
            return math.nan  # a missing number: the trees route NaN natively
        return None
    if kind == "float" or kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(
                f"field {column.name!r} expects a number ({column.datatype}); row {row} has "
                f"{value!r} ({type(value).__name__})"
            )
        if kind == "int" and isinstance(value, float) and not value.is_integer():
            raise BadRequest(
                f"field {column.name!r} expects an integer ({column.datatype}); row {row} has {value!r}"
            )
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise BadRequest(f"field {column.name!r} expects true/false; row {row} has {value!r}")
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise BadRequest(f"field {column.name!r} row {row} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise BadRequest(
            f"field {column.name!r} expects a string; row {row} has {value!r} ({type(value).__name__})"
        )
    return value


class ModelSchema:
    """Input columns of a model version, in signature order."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)
        self.by_name = {c.name: c for c in self.columns}

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

    def check_datatype(self, name: str, datatype: str) -> None:
        """Reject a v2 tensor whose declared datatype cannot carry the column's values."""
        column = self.by_name.get(name)
        if column is not None and datatype not in _ACCEPTED[column.kind]:
            raise BadRequest(
                f"input {name!r} has datatype {datatype}; the model expects {column.datatype}"
            )

    def check(self, columns: Mapping[str, Sequence[Any]], rows: int) -> Columns:
        """Validate complete columns (no missing, no extra, one value per row), in signature
        order, each value as the model reads it (numbers as floats: the frame's dtypes)."""
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
            checked[column.name] = [_check_value(column, i, v) for i, v in enumerate(values)]
        return checked

    def build(self, checked: Columns) -> pd.DataFrame:
        """The model's input frame of checked columns (of one request or a batch of them)."""
        return pd.DataFrame(
            {c.name: np.asarray(checked[c.name], dtype=c.dtype) for c in self.columns}, copy=False
        )

    def frame(self, columns: Mapping[str, Sequence[Any]], rows: int) -> pd.DataFrame:
        """Validate complete columns into the model's input frame (`check`, then `build`)."""
        return self.build(self.check(columns, rows))
