"""HTTP client of the drift detector server (the drift runtime's own environment).

The main environment never imports alibi-detect: it sends column-oriented JSON
(`{"columns": {name: [value, ...]}}`, see platform/drift-runtime/PROTOCOL.md) and reads typed
answers back.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

import httpx
import numpy as np
import orjson
import pandas as pd

from loopstack.core.errors import InvalidInput
from loopstack.monitoring.drift_report import DriftReport
from loopstack.monitoring.errors import (
    DetectorNotFound,
    DetectorRequestFailed,
    DetectorRequestInvalid,
    DetectorServerUnavailable,
)

__all__ = ["DetectorClient", "frame_to_columns"]


def _column_values(name: str, column: pd.Series) -> list[Any]:
    """One column as JSON-ready Python values; missing values become null."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) and not column.hasnans:
        return column.to_numpy(dtype=bool).tolist()
    if pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        if isinstance(dtype, np.dtype) and not column.hasnans:
            array = column.to_numpy()
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise InvalidInput(f"column {name!r} has infinite values, which JSON cannot carry")
            return array.tolist()  # the fast path: plain int/float columns
        return column.astype(object).where(column.notna(), None).tolist()
    if pd.api.types.is_object_dtype(dtype) or isinstance(
        dtype, pd.StringDtype | pd.CategoricalDtype
    ):
        values = column.astype(object).where(column.notna(), None).tolist()
        # numpy scalars inside object columns are not JSON: unwrap them.
        return [v.item() if isinstance(v, np.generic) else v for v in values]
    raise InvalidInput(
        f"column {name!r} has dtype {dtype}; drift detectors take numbers, strings or booleans"
    )


def frame_to_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as the wire table `{"columns": {name: [values]}}`."""
    if not frame.columns.is_unique:
        raise InvalidInput(f"frame has duplicate column names: {list(frame.columns)}")
    return {
        "columns": {str(name): _column_values(str(name), frame[name]) for name in frame.columns}
    }


class DetectorClient:
    """Fits, loads and scores drift detectors on a detector server."""

    def __init__(
        self, base_url: str, timeout: float = 60.0, http: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # One pooled client: scoring many windows reuses the connection.
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._http.close()

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def healthy(self) -> bool:
        """Whether the server answers its health check."""
        try:
            return self._http.get("/healthz", timeout=2.0).is_success
        except httpx.HTTPError:
            return False

    def fit(
        self,
        key: str,
        reference: pd.DataFrame,
        categorical: Sequence[str] = (),
        *,
        prediction: str | None = None,
        features: Sequence[str] | None = None,
        p_value: float = 0.05,
        correction: Literal["bonferroni", "fdr"] = "bonferroni",
        outlier_quantile: float = 0.99,
        min_size: int = 30,
    ) -> bytes:
        """Fit feature-drift, prediction-drift and outlier detectors on a reference sample.

        Args:
            key: Detector key, e.g. `bike-demand-v3` (letters, digits, `.`, `_`, `-`).
            reference: Reference sample; every column is a feature except `prediction`.
            categorical: Feature columns tested with chi-squared instead of KS.
            prediction: Column holding the model's predictions (KS-tested on its own).
            features: Feature columns, if not all but `prediction`.
            p_value: Significance level before the multiple-test correction.
            correction: `bonferroni` or `fdr` across features.
            outlier_quantile: Quantile of reference outlier scores used as outlier threshold.
            min_size: Windows with fewer rows are answered `not_enough_data`.

        Returns:
            The detectors' bundle (tar.gz): store it as an MLflow artifact and `load` it later.

        Raises:
            DetectorRequestInvalid: The server refused the reference or options.
            DetectorServerUnavailable: The server is not reachable or failed.
        """
        body: dict[str, Any] = {
            "reference": frame_to_columns(reference),
            "categorical": list(categorical),
            "prediction": prediction,
            "p_value": p_value,
            "correction": correction,
            "outlier_quantile": outlier_quantile,
            "min_size": min_size,
        }
        if features is not None:
            body["features"] = list(features)
        answer = self._call("POST", f"/v1/detectors/{key}/fit", key, content=_dumps(body))
        return base64.b64decode(answer.json()["bundle"])

    def load(self, key: str, bundle: bytes) -> None:
        """Install a bundle from `fit` (e.g. read back from MLflow) under `key`."""
        self._call(
            "PUT",
            f"/v1/detectors/{key}/bundle",
            key,
            content=bundle,
            headers={"content-type": "application/gzip"},
        )

    def bundle(self, key: str) -> bytes:
        """The bundle of a key's detectors as the server holds them."""
        return self._call("GET", f"/v1/detectors/{key}/bundle", key).content

    def score(self, key: str, window: pd.DataFrame) -> DriftReport:
        """Test one window (same feature columns as the reference) for drift and outliers."""
        body = {"window": frame_to_columns(window)}
        answer = self._call("POST", f"/v1/detectors/{key}/score", key, content=_dumps(body))
        return DriftReport.from_json(answer.json())

    def _call(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        """Send one request; map transport failures and error answers to Loopstack errors."""
        if "content" in kwargs and "headers" not in kwargs:
            kwargs["headers"] = {"content-type": "application/json"}
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Never reached the server: down or restarting, a retry later can cure it.
            raise DetectorServerUnavailable(self.base_url, f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            # Sent, then lost: the server died or hung on this request, perhaps because of it.
            raise DetectorRequestFailed(self.base_url, f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response
        reason = _error_reason(response)
        if response.status_code == 404 and reason.startswith("detector "):
            raise DetectorNotFound(key)
        if 400 <= response.status_code < 500:
            raise DetectorRequestInvalid(key, reason)
        raise DetectorRequestFailed(self.base_url, f"HTTP {response.status_code}: {reason}")


def _dumps(body: dict[str, Any]) -> bytes:
    # orjson: a 10k-row window encodes ~7x faster than with json (4 ms vs 30 ms here).
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        raise InvalidInput(f"data has a value JSON cannot carry: {exc}") from exc


def _error_reason(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
