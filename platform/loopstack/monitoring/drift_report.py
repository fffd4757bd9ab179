"""What the detector server answers for one window, as typed models (see PROTOCOL.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["DriftReport", "FeatureDrift", "OutlierSummary", "PredictionDrift"]


class _Model(BaseModel):
    # Unknown fields are ignored so a newer server stays readable by an older client.
    model_config = ConfigDict(frozen=True, extra="ignore")


class FeatureDrift(_Model):
    """One feature's test: KS for numeric features, chi-squared for categorical ones."""

    feature: str
    test: Literal["ks", "chi2"]
    statistic: float | None
    p_value: float | None
    drifted: bool


class PredictionDrift(FeatureDrift):
    """The KS test on the model's prediction column, at the uncorrected p-value."""

    threshold: float


class OutlierSummary(_Model):
    """Isolation-forest outlier scores of the window against the reference quantile."""

    threshold: float
    mean: float | None
    max: float | None
    fraction_over_threshold: float
    flags: tuple[bool, ...]
    """One flag per window row, in row order: True where the row's score is over the threshold."""


class DriftReport(_Model):
    """Drift verdict for one window of one detector key."""

    key: str
    status: Literal["ok", "not_enough_data"]
    n_rows: int
    min_size: int
    drifted: bool
    """Whether the features drifted after the multiple-test correction (False without data)."""
    threshold: float | None
    """The corrected per-feature p-value threshold (None when there was not enough data)."""
    p_value: float
    correction: Literal["bonferroni", "fdr"]
    features: tuple[FeatureDrift, ...]
    prediction: PredictionDrift | None
    outliers: OutlierSummary | None
    elapsed_ms: float
    """Time the server spent testing the window (decoding and transport excluded)."""

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features whose test rejected 'same distribution'."""
        return [f.feature for f in self.features if f.drifted]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DriftReport:
        """Build a report from the server's JSON answer."""
        return cls.model_validate(data)
