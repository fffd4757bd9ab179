"""Request bodies of the detector API: parse JSON objects into typed arguments (see PROTOCOL.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from loopstack_drift.columns import parse_table
from loopstack_drift.detectors import FitOptions
from loopstack_drift.errors import InvalidRequest
from loopstack_drift.limits import Limits

__all__ = ["FitRequest", "check_key", "parse_fit", "parse_json", "parse_window"]

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_FIT_FIELDS = {
    "reference",
    "features",
    "categorical",
    "prediction",
    "p_value",
    "correction",
    "outlier_quantile",
    "min_size",
    "n_estimators",
    "seed",
}


def check_key(key: str) -> str:
    """A detector key is also a directory name: letters, digits, `.`, `_`, `-`."""
    if not _KEY.fullmatch(key) or ".." in key:
        raise InvalidRequest(
            f"invalid detector key {key!r}: use 1-128 letters, digits, '.', '_' or '-'"
        )
    return key


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body; NaN and Infinity are not JSON and are refused."""
    try:
        # orjson: strict JSON (no NaN/Infinity, valid UTF-8) and ~4x faster than json on windows.
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("body must be a JSON object")
    return value


@dataclass(frozen=True)
class FitRequest:
    """A parsed fit body."""

    columns: dict[str, list[Any]]
    features: list[str] | None
    categorical: list[str]
    prediction: str | None
    options: FitOptions


def _string_list(body: dict[str, Any], field: str) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"'{field}' must be a list of column names")
    return value


def _number(body: dict[str, Any], field: str, default: float, low: float, high: float) -> float:
    value = body.get(field, default)
    if type(value) not in (int, float) or not low < value < high:
        raise InvalidRequest(f"'{field}' must be a number strictly between {low} and {high}")
    return float(value)


def _integer(body: dict[str, Any], field: str, default: int, low: int, high: int = 2**31) -> int:
    value = body.get(field, default)
    if type(value) is not int or not low <= value <= high:
        raise InvalidRequest(f"'{field}' must be an integer from {low} to {high}")
    return value


def parse_fit(body: dict[str, Any], limits: Limits | None = None) -> FitRequest:
    """Validate a fit body: reference table (within `limits`), column roles and options."""
    unknown = sorted(set(body) - _FIT_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown fields {unknown}; allowed: {sorted(_FIT_FIELDS)}")
    if "reference" not in body:
        raise InvalidRequest("'reference' is required")
    columns = parse_table(body["reference"], "reference", limits)
    prediction = body.get("prediction")
    if prediction is not None and not isinstance(prediction, str):
        raise InvalidRequest("'prediction' must be a column name")
    correction = body.get("correction", "bonferroni")
    if correction not in ("bonferroni", "fdr"):
        raise InvalidRequest("'correction' must be 'bonferroni' or 'fdr'")
    defaults = FitOptions()
    options = FitOptions(
        p_value=_number(body, "p_value", defaults.p_value, 0.0, 1.0),
        correction=correction,
        outlier_quantile=_number(body, "outlier_quantile", defaults.outlier_quantile, 0.0, 1.0),
        min_size=_integer(body, "min_size", defaults.min_size, 1),
        n_estimators=_integer(body, "n_estimators", defaults.n_estimators, 1),
        seed=_integer(body, "seed", defaults.seed, 0),
    )
    n_rows = len(next(iter(columns.values())))
    if n_rows < max(options.min_size, 2):
        raise InvalidRequest(
            f"reference has {n_rows} rows; it needs at least min_size ({options.min_size}) and 2"
        )
    return FitRequest(
        columns=columns,
        features=_string_list(body, "features"),
        categorical=_string_list(body, "categorical") or [],
        prediction=prediction,
        options=options,
    )


def parse_window(body: dict[str, Any], limits: Limits | None = None) -> dict[str, list[Any]]:
    """Validate a score body `{"window": {"columns": ...}}` within `limits`; return its columns."""
    unknown = sorted(set(body) - {"window"})
    if unknown:
        raise InvalidRequest(f"unknown fields {unknown}; allowed: ['window']")
    if "window" not in body:
        raise InvalidRequest("'window' is required")
    return parse_table(body["window"], "window", limits)
