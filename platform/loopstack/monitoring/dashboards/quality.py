"""Live quality: metrics per version and route, per segment, the degraded flag, and the review
queue (pending reviews, override rate).

`loopstack_quality_metric{model,version,route,metric,segment}`: `segment` is empty for the whole
window and `field=value` (e.g. `season=1`) for one segment of the model spec's `segments`.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from loopstack.monitoring.dashboards._panels import base, timeseries_panel

__all__ = ["build"]

METRIC = "loopstack_quality_metric"
DEGRADED = "loopstack_quality_degraded"
PENDING = "loopstack_reviews_pending"
OVERRIDE = "loopstack_review_override_rate"
SEL = 'model=~"$model", version=~"$version"'


def build() -> Dashboard:
    """The quality dashboard."""
    return (
        base(
            "loopstack-quality",
            "Loopstack / Quality",
            "Live quality from joined predictions and outcomes.",
            METRIC,
        )
        .with_row(Row("Per version"))
        .with_panel(
            timeseries_panel(
                "Quality by version and route",
                [(f'{METRIC}{{{SEL}, segment=""}}', "{{model}} v{{version}} {{route}} {{metric}}")],
                "short",
                description="Rolling-window metric (rmse, auc, ...) of each version on its own traffic.",
                width=24,
            )
        )
        .with_panel(
            timeseries_panel(
                "Degraded",
                [(f"max by (model, version) ({DEGRADED}{{{SEL}}})", "{{model}} v{{version}}")],
                "bool_yes_no",
                description="1 while live quality is worse than the training baseline by the model's margin.",
                width=24,
            )
        )
        .with_row(Row("Per segment"))
        .with_panel(
            timeseries_panel(
                "Quality by segment",
                [
                    (
                        f'{METRIC}{{{SEL}, segment!=""}}',
                        "{{model}} v{{version}} {{segment}} {{metric}}",
                    )
                ],
                "short",
                description="The same metric within each value of the model spec's `segments` fields.",
                width=24,
            )
        )
        .with_row(Row("Human review"))
        .with_panel(
            timeseries_panel(
                "Reviews pending",
                [(f"{PENDING}{{{SEL}}}", "{{model}} v{{version}}")],
                "short",
                description="Flagged predictions (low confidence, outliers) waiting for a reviewer.",
                width=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Override rate",
                [(f"{OVERRIDE}{{{SEL}}}", "{{model}} v{{version}}")],
                "percentunit",
                description="Share of reviewers' decisions that differ from the model's answer.",
                width=12,
            )
        )
    )
