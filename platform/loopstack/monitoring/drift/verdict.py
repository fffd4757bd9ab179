"""The effect-size guard: a feature drifts only if its test is significant AND its effect is big.

Hourly traffic is autocorrelated, so a window of contiguous predictions is not an i.i.d. sample
of anything: the KS and chi-squared p-values treat every hour as independent evidence and call
almost any week "different" from a reference of other weeks. The guard keeps the p-value test
and adds a minimum effect: the KS distance for numeric features and the prediction, Cramér's V
of the reference-vs-window table for categorical ones (`DriftSpec.min_statistic`,
`min_cramers_v`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loopstack.core.modelspec import DriftSpec
from loopstack.monitoring.drift_report import DriftReport, FeatureDrift

__all__ = ["FeatureVerdict", "WindowVerdict", "cramers_v", "judge"]


def cramers_v(chi2: float | None, n_reference: int, n_window: int) -> float | None:
    """Cramér's V of a 2 x k contingency table (reference vs window): sqrt(chi2 / N)."""
    total = n_reference + n_window
    if chi2 is None or total <= 0 or not math.isfinite(chi2):
        return None
    return min(1.0, math.sqrt(max(chi2, 0.0) / total))


@dataclass(frozen=True)
class FeatureVerdict:
    """One feature's (or the prediction's) test with its effect size and the guarded verdict."""

    feature: str
    test: str
    statistic: float | None
    effect: float | None
    p_value: float | None
    threshold: float | None
    significant: bool
    """p-value below the threshold (the server's verdict, before the guard)."""
    drifted: bool
    """Significant and the effect at least the spec's minimum."""

    def to_json(self) -> dict[str, object]:
        """The `drift.v1` feature entry."""
        return {
            "feature": self.feature,
            "test": self.test,
            "statistic": self.statistic,
            "effect": self.effect,
            "p_value": self.p_value,
            "significant": self.significant,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class WindowVerdict:
    """The guarded verdicts of one window."""

    features: tuple[FeatureVerdict, ...]
    prediction: FeatureVerdict | None

    @property
    def drifted(self) -> bool:
        """Some feature drifted (after the guard)."""
        return any(f.drifted for f in self.features)


def _judge_one(
    result: FeatureDrift,
    threshold: float | None,
    spec: DriftSpec,
    n_reference: int,
    n_window: int,
) -> FeatureVerdict:
    if result.test == "chi2":
        effect = cramers_v(result.statistic, n_reference, n_window)
        minimum = spec.min_cramers_v
    else:
        effect, minimum = result.statistic, spec.min_statistic
    drifted = result.drifted and (minimum <= 0 or (effect is not None and effect >= minimum))
    return FeatureVerdict(
        feature=result.feature,
        test=result.test,
        statistic=result.statistic,
        effect=effect,
        p_value=result.p_value,
        threshold=threshold,
        significant=result.drifted,
        drifted=drifted,
    )


def judge(report: DriftReport, spec: DriftSpec, n_reference: int) -> WindowVerdict:
    """Apply the effect-size guard of `spec` to a detector server report."""
    features = tuple(
        _judge_one(f, report.threshold, spec, n_reference, report.n_rows) for f in report.features
    )
    prediction = (
        _judge_one(report.prediction, report.prediction.threshold, spec, n_reference, report.n_rows)
        if report.prediction is not None
        else None
    )
    return WindowVerdict(features, prediction)
