"""The event backbone: publish rate, consumer lag, dead letters and outbox depth.

Names as exported by `loopstack.core.events.metrics.EventMetrics` (counters gain `_total`).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from loopstack.monitoring.dashboards._panels import base, timeseries_panel

__all__ = ["build"]

PUBLISHED = "loopstack_events_published_total"
APPLIED = "loopstack_events_applied_total"
LAG = "loopstack_events_consumer_lag"
DEAD = "loopstack_events_dead_lettered_total"
OUTBOX = "loopstack_events_outbox_depth"
REJECTED = "loopstack_events_publish_rejected_total"
RATE = "[$__rate_interval]"


def build() -> Dashboard:
    """The events dashboard."""
    return (
        # Events are per topic and consumer group, not per model: no model/version variables.
        base(
            "loopstack-events",
            "Loopstack / Events",
            "Event log: publishing, consuming, dead letters, outboxes.",
            None,
        )
        .with_row(Row("Flow"))
        .with_panel(
            timeseries_panel(
                "Published/s by topic",
                [(f"sum by (topic) (rate({PUBLISHED}{RATE}))", "{{topic}}")],
                "ops",
            )
        )
        .with_panel(
            timeseries_panel(
                "Applied/s by group",
                [(f"sum by (group, topic) (rate({APPLIED}{RATE}))", "{{group}} {{topic}}")],
                "ops",
            )
        )
        .with_row(Row("Backlog"))
        .with_panel(
            timeseries_panel(
                "Consumer lag", [(f"sum by (group, topic) ({LAG})", "{{group}} {{topic}}")], "short"
            )
        )
        .with_panel(
            timeseries_panel(
                "Outbox depth (spill)", [(f"max by (outbox) ({OUTBOX})", "{{outbox}}")], "short"
            )
        )
        .with_row(Row("Failures"))
        .with_panel(
            timeseries_panel(
                "Dead-lettered/s",
                [
                    (
                        f"sum by (topic, group, reason) (rate({DEAD}{RATE}))",
                        "{{topic}} {{group}} {{reason}}",
                    )
                ],
                "ops",
            )
        )
        .with_panel(
            timeseries_panel(
                "Publishes refused (outbox full)",
                [(f"sum by (outbox) (rate({REJECTED}{RATE}))", "{{outbox}}")],
                "ops",
            )
        )
    )
