"""Explanations of predictions: SHAP contributions of each input field, computed only on request.

A request asks with `explain` (`?explain=true` on v1, a request parameter on v2 and gRPC); the
normal path only checks that parameter. The explainer is model-agnostic: shap on the version's
own scoring function (exact when every coalition of fields fits the evaluation budget, else
sampled permutations), masking with a small background sample (the drift reference the train
pipeline logs with the version, else the model's input example), built once per version on its
first explanation. Fields are explained as the request states them, Feast features included:
shap sees numbers, so text and boolean fields travel as codes of the values the row and the
background hold, decoded before the model reads them.

Each explanation is additive: `base_value` (the mean output over the background) plus every
field's contribution (the listed top ones and `others`) equals `output_value`, the regressor's
prediction or the classifier's probability of the predicted class. Fields the background lacks
(sensitive ones, which reference samples leave out) are `held` at the row's value instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopstack.core.pii import MASK
from loopstack.serving.errors import BadRequest, ExplanationFailed, ExplanationUnavailable
from loopstack.serving.loader import LoadedVersion, Scores
from loopstack.serving.schema import Column, ModelSchema

__all__ = [
    "EXPLAIN",
    "MAX_EXPLAIN_ROWS",
    "BackgroundSource",
    "Explainers",
    "explain_requested",
    "warm_up",
]

log = logging.getLogger(__name__)

EXPLAIN = "explain"
"""Request parameter that asks for explanations."""
MAX_EXPLAIN_ROWS = 100
"""Rows one request may ask to explain (each costs `explain_max_evals` model evaluations)."""
_CACHED_VERSIONS = 16
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
# shap's permutation explainer seeds numpy's global generator when it is built; explanations
# hold this lock so each one sees the same seed (same request, same explanation).
_SHAP_LOCK = threading.Lock()

BackgroundSource = Callable[[str, str], pd.DataFrame | None]
"""(model, version) -> the version's reference sample, or None when it has none."""


def explain_requested(parameters: dict[str, Any]) -> bool:
    """Pop the `explain` parameter: a JSON boolean, or true/false text (a query string).

    Raises:
        BadRequest: the value is neither.
    """
    value = parameters.pop(EXPLAIN, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequest(f"parameter {EXPLAIN!r} must be true or false, got {value!r}")


def warm_up() -> None:
    """Import shap and compile its numba kernels (seconds of CPU), so no request pays them."""
    started = time.perf_counter()
    import shap

    background, row = np.zeros((2, 2)), np.ones((1, 2))
    masker = shap.maskers.Independent(background)
    with _SHAP_LOCK:
        # Both explainers, on a single-output and a multi-output model: each compiles kernels.
        for model in (lambda m: m.sum(axis=1), lambda m: np.column_stack([m[:, 0], m[:, 1]])):
            shap.explainers.Permutation(model, masker, seed=0)(row, max_evals=5, silent=True)
            shap.explainers.Exact(model, masker)(row, max_evals=5, silent=True)
    log.info("explanations ready (shap warmed up in %.1f s)", time.perf_counter() - started)


@dataclass(frozen=True)
class _Background:
    frame: pd.DataFrame
    """The fields it has, validated like a request frame (the signature's dtypes)."""
    source: str


@dataclass(frozen=True)
class _Row:
    method: str
    values: np.ndarray
    """SHAP value per field ([fields] or [fields, classes]); 0 for held fields."""
    base: np.ndarray
    """Mean output over the background (scalar or [classes])."""


class Explainers:
    """Explains rows of any loaded version; keeps the background of the last versions explained."""

    def __init__(
        self,
        background: BackgroundSource | None = None,
        *,
        top_k: int = 5,
        background_rows: int = 50,
        max_evals: int = 256,
        seed: int = 0,
    ) -> None:
        self._source = background
        self.top_k = top_k
        self.background_rows = background_rows
        self.max_evals = max_evals
        self.seed = seed
        self._lock = threading.Lock()
        self._backgrounds: OrderedDict[tuple[str, str], _Background] = OrderedDict()

    def explain(
        self,
        version: LoadedVersion,
        frame: pd.DataFrame,
        scores: Scores,
        sensitive: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """One explanation per row of `frame` (as scored into `scores`); sensitive values masked.

        Fields the background lacks (the train pipeline leaves sensitive fields out of its
        reference sample) are `held`: kept at the row's value, so their effect is part of
        `base_value` and they get no contribution.

        Raises:
            BadRequest: more than `MAX_EXPLAIN_ROWS` rows.
            ExplanationUnavailable: the version has no usable background sample.
            ExplanationFailed: shap raised.
        """
        if len(frame) > MAX_EXPLAIN_ROWS:
            raise BadRequest(
                f"explain covers at most {MAX_EXPLAIN_ROWS} rows per request, got {len(frame)}; "
                "split the request or resend without explain"
            )
        background = self._background(version)
        try:
            codec = _Codec(version.schema.columns, frame, background.frame)
            explained = self._shap(version, codec)
        except Exception as exc:
            log.exception("%s v%s: explanation failed", version.model, version.version)
            raise ExplanationFailed(version.model, version.version, exc) from exc
        names = [c.name for c in version.schema.columns]
        held = [names[j] for j in codec.held]
        out = []
        for i, (record, row) in enumerate(
            zip(frame.to_dict(orient="records"), explained, strict=True)
        ):
            if scores.probabilities is None:
                output, value, values, base = (
                    "prediction",
                    scores.predictions[i],
                    row.values,
                    row.base,
                )
            else:
                # A classifier answers every class: explain the class the row was given.
                k = int(np.argmax(scores.probabilities[i]))
                output = f"probability of {scores.predictions[i]}"
                value, values, base = scores.probabilities[i][k], row.values[:, k], row.base[k]
            ranked = sorted(
                ((n, c) for n, c in zip(names, values.tolist(), strict=True) if n not in held),
                key=lambda p: (-abs(p[1]), p[0]),
            )
            out.append(
                {
                    "output": output,
                    "output_value": float(value),
                    "base_value": float(base),
                    "contributions": [
                        {
                            "feature": name,
                            "value": MASK if name in sensitive else _plain(record[name]),
                            "contribution": contribution,
                        }
                        for name, contribution in ranked[: self.top_k]
                    ],
                    "others": float(sum(c for _, c in ranked[self.top_k :])),
                    "held": held,
                    "method": row.method,
                    "background": {"source": background.source, "rows": len(background.frame)},
                }
            )
        return out

    def _shap(self, version: LoadedVersion, codec: _Codec) -> list[_Row]:
        """SHAP values of each row: exact when every coalition of fields fits `max_evals` (a few
        fields: one batched model call), else antithetic permutations sampled within it."""
        # Heavy (seconds, plus numba compiling its kernels on first use): imported by the first
        # explanation or by `warm_up`, never on the normal path.
        import shap

        classifier = version.classes is not None

        def model(matrix: np.ndarray) -> np.ndarray:
            decoded = codec.decode(matrix)
            if classifier:
                return np.asarray(version.estimator.predict_proba(decoded), dtype=float)
            return np.asarray(version.estimator.predict(decoded), dtype=float)

        # Counted with the held fields: shap counts a held NaN as varying (NaN != NaN).
        fields = len(codec.columns)
        exact = 2**fields <= self.max_evals
        # Fewer evaluations than one forward-and-back permutation is an error in shap.
        evals = self.max_evals if exact else max(self.max_evals, 2 * fields + 1)
        rows = []
        for i in range(len(codec.rows)):
            # Per row: the held fields of the background take this row's values.
            background = codec.background_for(i)
            masker = shap.maskers.Independent(background, max_samples=len(background))
            with _SHAP_LOCK:
                if exact:
                    explainer: Any = shap.explainers.Exact(model, masker)
                else:
                    explainer = shap.explainers.Permutation(model, masker, seed=self.seed)
                explained = explainer(codec.rows[i : i + 1], max_evals=evals, silent=True)
            rows.append(
                _Row(
                    "shap-exact" if exact else "shap-permutation",
                    np.asarray(explained.values[0], dtype=float),
                    np.asarray(explained.base_values[0], dtype=float),
                )
            )
        return rows

    def _background(self, version: LoadedVersion) -> _Background:
        key = (version.model, version.version)
        with self._lock:
            found = self._backgrounds.get(key)
            if found is not None:
                self._backgrounds.move_to_end(key)
                return found
        # Built outside the lock (an MLflow download); two first requests may both build it.
        built = self._build_background(version)
        with self._lock:
            self._backgrounds[key] = built
            while len(self._backgrounds) > _CACHED_VERSIONS:
                self._backgrounds.popitem(last=False)
        return built

    def _build_background(self, version: LoadedVersion) -> _Background:
        raw, source = None, "reference"
        if self._source is not None:
            raw = self._source(version.model, version.version)
        if raw is None:
            raw, source = version.example, "input example"
        if raw is None or raw.empty:
            raise ExplanationUnavailable(
                version.model, version.version, "it has no reference sample and no input example"
            )
        present = [c for c in version.schema.columns if c.name in raw]
        if not present:
            raise ExplanationUnavailable(
                version.model, version.version, f"its {source} has none of the model's fields"
            )
        if len(raw) > self.background_rows:
            raw = raw.sample(n=self.background_rows, random_state=self.seed)
        columns = {c.name: [_plain(v) for v in raw[c.name].tolist()] for c in present}
        try:
            # Training data: a gap there is one the model learned with, whatever the spec
            # lets callers send.
            frame = ModelSchema(present).frame(columns, len(raw), nullable=columns.keys())
        except BadRequest as exc:
            raise ExplanationUnavailable(
                version.model, version.version, f"its {source} does not fit the signature: {exc}"
            ) from exc
        return _Background(frame.reset_index(drop=True), source)


class _Codec:
    """The rows and background as float matrices for shap, and back to a frame for the model.

    Number fields are their own values; other fields are codes into the values the rows and the
    background hold (masking only ever swaps whole values, so every code decodes). Fields the
    background lacks are held: `background_for(i)` sets them to row i's values.
    """

    def __init__(self, columns: list[Column], rows: pd.DataFrame, background: pd.DataFrame) -> None:
        self.columns = columns
        self.held = [j for j, c in enumerate(columns) if c.name not in background]
        self.tables: dict[int, np.ndarray] = {}
        size = len(background)
        row_parts, background_parts = [], []
        for j, column in enumerate(columns):
            known = column.name in background
            if column.kind in ("float", "int"):
                row_parts.append(rows[column.name].to_numpy(dtype=float))
                background_parts.append(
                    background[column.name].to_numpy(dtype=float) if known else np.zeros(size)
                )
                continue
            seen: dict[Any, int] = {}
            codes = [
                [seen.setdefault(v, len(seen)) for v in frame[column.name].tolist()]
                for frame in ((rows, background) if known else (rows,))
            ]
            table = np.empty(len(seen), dtype=object)
            table[:] = list(seen)
            self.tables[j] = table
            row_parts.append(np.asarray(codes[0], dtype=float))
            background_parts.append(np.asarray(codes[1], dtype=float) if known else np.zeros(size))
        self.rows = np.column_stack(row_parts)
        self.background = np.column_stack(background_parts)

    def background_for(self, i: int) -> np.ndarray:
        """The background with the held fields at row i's values (so they never vary)."""
        if not self.held:
            return self.background
        out = self.background.copy()
        out[:, self.held] = self.rows[i, self.held]
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        """The model's frame of a (masked) matrix."""
        data: dict[str, Any] = {}
        for j, column in enumerate(self.columns):
            table = self.tables.get(j)
            if table is None:
                data[column.name] = matrix[:, j].astype(column.dtype)
            else:
                data[column.name] = pd.Series(table[matrix[:, j].astype(int)], dtype=column.dtype)
        return pd.DataFrame(data)


def _plain(value: Any) -> Any:
    """A frame value as JSON takes it (numpy scalars as Python, NaN and NA as None)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
