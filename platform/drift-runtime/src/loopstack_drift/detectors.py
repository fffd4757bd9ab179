"""One key's detectors: feature drift, prediction drift and outliers; fit, score, save, load.

No HTTP here: the service and the tests drive this directly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from alibi_detect.cd import KSDrift, TabularDrift
from alibi_detect.od import IForest
from alibi_detect.saving import load_detector, save_detector

from loopstack_drift.columns import Schema

__all__ = ["BUNDLE_FORMAT", "DetectorSet", "FitOptions"]

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
_META = "meta.json"
_FEATURE_DRIFT = "feature_drift"
_PREDICTION_DRIFT = "prediction_drift"


@dataclass(frozen=True)
class FitOptions:
    """How a detector set is fitted and when a window counts as drifted."""

    p_value: float = 0.05
    """Significance level, before the multiple-test correction across features."""
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    """How per-feature p-values are combined into one verdict."""
    outlier_quantile: float = 0.99
    """Quantile of the reference's outlier scores above which a row is an outlier."""
    min_size: int = 30
    """Windows with fewer rows are answered `not_enough_data` instead of tested."""
    n_estimators: int = 50
    """Trees in the isolation forest: scoring cost grows with it (10k rows, 2 cores: ~60 ms at 50)."""
    seed: int = 0
    """Random state of the isolation forest: refitting on load gives the same forest."""


def _finite(value: float) -> float | None:
    # JSON has no NaN/inf; a degenerate test (e.g. a constant column) reports null instead.
    value = float(value)
    return value if math.isfinite(value) else None


def _fit_outlier(x_ref: np.ndarray, options: FitOptions) -> tuple[IForest, float]:
    """Isolation forest on the reference, threshold = the configured quantile of its scores."""
    # A placeholder threshold (replaced by infer_threshold below) avoids alibi's "no threshold" warning.
    detector = IForest(threshold=math.inf, n_estimators=options.n_estimators)
    # Fixed random state: a bundle holds only the reference data, and refitting from it on load
    # gives back the same forest (alibi-detect 0.11.4 can save IForest only through TensorFlow).
    detector.isolationforest.set_params(random_state=options.seed)
    detector.fit(x_ref)
    detector.infer_threshold(x_ref, threshold_perc=100.0 * options.outlier_quantile)
    return detector, float(detector.threshold)


class DetectorSet:
    """The detectors fitted for one key, with the schema that encodes their input."""

    def __init__(
        self,
        schema: Schema,
        options: FitOptions,
        feature_drift: TabularDrift,
        prediction_drift: KSDrift | None,
        outlier: IForest,
        outlier_threshold: float,
        n_reference: int,
    ) -> None:
        self.schema = schema
        self.options = options
        self.feature_drift = feature_drift
        self.prediction_drift = prediction_drift
        self.outlier = outlier
        self.outlier_threshold = outlier_threshold
        self.n_reference = n_reference

    @classmethod
    def fit(
        cls, schema: Schema, x_ref: np.ndarray, pred_ref: np.ndarray | None, options: FitOptions
    ) -> DetectorSet:
        """Fit all detectors on an encoded reference sample."""
        categorical = {
            j: None for j, name in enumerate(schema.features) if name in schema.categories
        }
        feature_drift = TabularDrift(
            x_ref,
            p_val=options.p_value,
            # An empty dict (not None) when all are numeric: None makes alibi warn on every fit.
            categories_per_feature=categorical,
            correction=options.correction,
        )
        prediction_drift = None
        if pred_ref is not None:
            prediction_drift = KSDrift(pred_ref, p_val=options.p_value)
        outlier, threshold = _fit_outlier(x_ref, options)
        return cls(schema, options, feature_drift, prediction_drift, outlier, threshold, len(x_ref))

    def summary(self) -> dict[str, Any]:
        """What was fitted, without the bundle bytes."""
        return {
            "features": list(self.schema.features),
            "categorical": list(self.schema.categories),
            "prediction": self.schema.prediction,
            "n_reference": self.n_reference,
            "outlier_threshold": self.outlier_threshold,
            "options": asdict(self.options),
        }

    def score(self, x: np.ndarray, pred: np.ndarray | None) -> dict[str, Any]:
        """Test one encoded window against the reference."""
        started = time.perf_counter()
        n_rows = len(x)
        base: dict[str, Any] = {
            "n_rows": n_rows,
            "min_size": self.options.min_size,
            "p_value": self.options.p_value,
            "correction": self.options.correction,
        }
        if n_rows < self.options.min_size:
            return {
                **base,
                "status": "not_enough_data",
                "drifted": False,
                "threshold": None,
                "features": [],
                "prediction": None,
                "outliers": None,
                "elapsed_ms": (time.perf_counter() - started) * 1000,
            }
        features, drifted, threshold = self._feature_drift(x)
        return {
            **base,
            "status": "ok",
            "drifted": drifted,
            "threshold": threshold,
            "features": features,
            "prediction": self._prediction_drift(pred),
            "outliers": self._outliers(x),
            "elapsed_ms": (time.perf_counter() - started) * 1000,
        }

    def _feature_drift(self, x: np.ndarray) -> tuple[list[dict[str, Any]], bool, float]:
        data = self.feature_drift.predict(
            x, drift_type="batch", return_p_val=True, return_distance=True
        )["data"]
        p_values, statistics = data["p_val"], data["distance"]
        threshold = data["threshold"]
        if np.ndim(threshold) > 0:
            # FDR with nothing significant returns every Benjamini-Hochberg bound; the smallest
            # (p_value / n_features) is the one a single feature would have had to beat.
            threshold = float(np.min(threshold))
        threshold = float(threshold)
        features = [
            {
                "feature": name,
                "test": "chi2" if name in self.schema.categories else "ks",
                "statistic": _finite(statistics[j]),
                "p_value": _finite(p_values[j]),
                # Bonferroni: p < p_value / K. FDR: every rejected p-value lies below the
                # returned bound and every accepted one above it, so one rule serves both.
                "drifted": bool(p_values[j] < threshold),
            }
            for j, name in enumerate(self.schema.features)
        ]
        return features, bool(data["is_drift"]), threshold

    def _prediction_drift(self, pred: np.ndarray | None) -> dict[str, Any] | None:
        if self.prediction_drift is None or pred is None:
            return None
        data = self.prediction_drift.predict(pred, return_p_val=True, return_distance=True)["data"]
        return {
            "feature": self.schema.prediction,
            "test": "ks",
            "statistic": _finite(np.ravel(data["distance"])[0]),
            "p_value": _finite(np.ravel(data["p_val"])[0]),
            "drifted": bool(data["is_drift"]),
            "threshold": self.options.p_value,
        }

    def _outliers(self, x: np.ndarray) -> dict[str, Any]:
        scores = self.outlier.score(x)
        flags = scores > self.outlier_threshold
        return {
            "threshold": self.outlier_threshold,
            "mean": _finite(scores.mean()),
            "max": _finite(scores.max()),
            "fraction_over_threshold": float(flags.mean()),
            "flags": flags.tolist(),
        }

    def save(self, directory: Path) -> None:
        """Write the detectors under `directory` (created): alibi-detect's format plus meta.json."""
        # save_detector warns about every directory it has to create: create them first.
        (directory / _FEATURE_DRIFT).mkdir(parents=True, exist_ok=True)
        save_detector(self.feature_drift, directory / _FEATURE_DRIFT)
        if self.prediction_drift is not None:
            (directory / _PREDICTION_DRIFT).mkdir()
            save_detector(self.prediction_drift, directory / _PREDICTION_DRIFT)
        meta = {
            "format": BUNDLE_FORMAT,
            "schema": self.schema.to_json(),
            "options": asdict(self.options),
            "outlier_threshold": self.outlier_threshold,
            "n_reference": self.n_reference,
        }
        (directory / _META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> DetectorSet:
        """Read detectors written by `save`; the outlier forest is refitted from the reference."""
        meta = json.loads((directory / _META).read_text())
        if meta.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"unsupported bundle format {meta.get('format')!r}")
        schema = Schema.from_json(meta["schema"])
        options = FitOptions(**meta["options"])
        feature_drift = load_detector(directory / _FEATURE_DRIFT)
        prediction_drift = None
        if (directory / _PREDICTION_DRIFT).is_dir():
            prediction_drift = load_detector(directory / _PREDICTION_DRIFT)
        x_ref = np.asarray(feature_drift.x_ref)
        outlier, threshold = _fit_outlier(x_ref, options)
        if not math.isclose(threshold, meta["outlier_threshold"], rel_tol=1e-9, abs_tol=1e-12):
            # Only a different scikit-learn changes the refitted forest; keep the new threshold,
            # which matches the forest actually scoring.
            logger.warning(
                "outlier threshold changed on reload (%s -> %s): scikit-learn version differs?",
                meta["outlier_threshold"],
                threshold,
            )
        return cls(
            schema,
            options,
            feature_drift,
            prediction_drift,
            outlier,
            threshold,
            meta["n_reference"],
        )
