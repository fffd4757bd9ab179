"""The loop: rollout decisions, rollbacks, retrainings and deployment frequency."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from loopstack.monitoring.dashboards._panels import base, stat_panel, timeseries_panel

__all__ = ["build"]

DECISIONS = "loopstack_loop_decisions_total"
ROLLBACKS = "loopstack_loop_rollbacks_total"
RETRAININGS = "loopstack_loop_retrainings_total"
DEPLOY_FREQUENCY = "loopstack_loop_deployment_frequency"
LEAD_TIME = "loopstack_loop_lead_time_seconds"
FAILURE_RATE = "loopstack_loop_change_failure_rate"
RECOVERY = "loopstack_loop_time_to_recover_seconds"
CADENCE = "loopstack_loop_retraining_cadence_seconds"
SEL = 'model=~"$model"'


def build() -> Dashboard:
    """The loop dashboard (decisions and model-ops metrics)."""
    return (
        base(
            "loopstack-loop",
            "Loopstack / Loop",
            "Decisions of the rollout controller and retraining trigger.",
            DECISIONS,
        )
        .with_row(Row("Last 7 days"))
        .with_panel(
            stat_panel(
                "Deployments/week",
                (f"sum({DEPLOY_FREQUENCY}{{{SEL}}})", "promotions/week"),
                "short",
            )
        )
        .with_panel(
            stat_panel(
                "Rollbacks", (f"sum(increase({ROLLBACKS}{{{SEL}}}[7d]))", "rollbacks"), "short"
            )
        )
        .with_panel(
            stat_panel(
                "Retrainings",
                (f"sum(increase({RETRAININGS}{{{SEL}}}[7d]))", "retrainings"),
                "short",
            )
        )
        .with_panel(
            stat_panel(
                "Change failure rate",
                (f"max({FAILURE_RATE}{{{SEL}}})", "rolled back / finished rollouts"),
                "percentunit",
            )
        )
        .with_row(Row("Model-ops (from the decision history, model time)"))
        .with_panel(
            stat_panel(
                "Lead time", (f"max({LEAD_TIME}{{{SEL}}})", "trigger → promoted"), "s", width=8
            )
        )
        .with_panel(
            stat_panel(
                "Time to recover",
                (f"max({RECOVERY}{{{SEL}}})", "degraded → promoted"),
                "s",
                width=8,
            )
        )
        .with_panel(
            stat_panel(
                "Retraining cadence",
                (f"max({CADENCE}{{{SEL}}})", "between retrainings"),
                "s",
                width=8,
            )
        )
        .with_row(Row("Decisions"))
        .with_panel(
            timeseries_panel(
                "Decisions by kind",
                [
                    (
                        f"sum by (model, decision) (increase({DECISIONS}{{{SEL}}}[1h]))",
                        "{{model}} {{decision}}",
                    )
                ],
                "short",
                description="Shadow → canary steps → promote, or rollback; retrain triggers.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Retrainings by outcome",
                [
                    (
                        f"sum by (model, status) (increase({RETRAININGS}{{{SEL}}}[1h]))",
                        "{{model}} {{status}}",
                    )
                ],
                "short",
            )
        )
        .with_panel(
            timeseries_panel(
                "Rollbacks",
                [(f"sum by (model) (increase({ROLLBACKS}{{{SEL}}}[1h]))", "{{model}}")],
                "short",
            )
        )
        .with_panel(
            timeseries_panel(
                "Deployment frequency",
                [(f"{DEPLOY_FREQUENCY}{{{SEL}}}", "{{model}}")],
                "short",
                description="Versions promoted to champion per week of model time.",
            )
        )
    )
