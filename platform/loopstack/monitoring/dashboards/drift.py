"""Drift: per-feature p-values of the drift test and the model-level drift flag."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from loopstack.monitoring.dashboards._panels import base, timeseries_panel

__all__ = ["build"]

P_VALUE = "loopstack_drift_feature_p_value"
DETECTED = "loopstack_drift_detected"
SEL = 'model=~"$model", version=~"$version"'


def build() -> Dashboard:
    """The drift dashboard."""
    return (
        base(
            "loopstack-drift",
            "Loopstack / Drift",
            "Feature drift of logged traffic against the training reference.",
            P_VALUE,
        )
        .with_row(Row("Model"))
        .with_panel(
            timeseries_panel(
                "Drift detected",
                [(f"max by (model, version) ({DETECTED}{{{SEL}}})", "{{model}} v{{version}}")],
                "bool_yes_no",
                width=24,
            )
        )
        .with_row(Row("Features"))
        .with_panel(
            timeseries_panel(
                "p-value by feature",
                [(f"{P_VALUE}{{{SEL}}}", "{{model}} v{{version}} {{feature}}")],
                "short",
                description="Low p-values mean the feature's live distribution differs from the reference.",
                width=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Most drifted features (lowest p-value)",
                [
                    (
                        f"bottomk(10, min by (model, feature) ({P_VALUE}{{{SEL}}}))",
                        "{{model}} {{feature}}",
                    )
                ],
                "short",
                width=12,
            )
        )
    )
