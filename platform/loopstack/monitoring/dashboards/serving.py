"""Serving: traffic split between champion, canary and shadow, latency and errors by version."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from loopstack.monitoring.dashboards._panels import base, stat_panel, timeseries_panel

__all__ = ["build"]

REQUESTS = "loopstack_serving_requests_total"
DURATION = "loopstack_serving_request_duration_seconds_bucket"
SEL = 'model=~"$model", version=~"$version"'
# Server-side failures: HTTP 5xx on REST, the gRPC status name on gRPC (same as the alert rules).
ERRORS = 'status=~"5..|error|INTERNAL|UNAVAILABLE|UNKNOWN|DEADLINE_EXCEEDED"'
RATE = "[$__rate_interval]"


def _quantile(q: float) -> str:
    return f"histogram_quantile({q}, sum by (model, version, le) (rate({DURATION}{{{SEL}}}{RATE})))"


def build() -> Dashboard:
    """The serving dashboard."""
    rate = f"rate({REQUESTS}{{{SEL}}}{RATE})"
    return (
        base(
            "loopstack-serving",
            "Loopstack / Serving",
            "Traffic split, latency and errors by model version.",
            REQUESTS,
        )
        .with_row(Row("Overview"))
        .with_panel(stat_panel("Requests/s", (f"sum({rate})", "requests/s"), "reqps"))
        .with_panel(
            stat_panel(
                "Error ratio",
                (f"sum(rate({REQUESTS}{{{SEL}, {ERRORS}}}{RATE})) / sum({rate})", "errors"),
                "percentunit",
            )
        )
        .with_panel(stat_panel("p99 latency", (f"max({_quantile(0.99)})", "p99"), "s"))
        .with_panel(
            stat_panel(
                "Versions serving",
                (f"count(count by (model, version) ({rate} > 0))", "versions"),
                "short",
            )
        )
        .with_row(Row("Traffic split"))
        .with_panel(
            timeseries_panel(
                "Traffic share by version and route",
                [
                    (
                        f"sum by (model, version, route) ({rate}) / on (model) group_left sum by (model) ({rate})",
                        "{{model}} v{{version}} {{route}}",
                    )
                ],
                "percentunit",
                description="Share of each model's requests per version and route (champion, canary, shadow).",
            )
        )
        .with_panel(
            timeseries_panel(
                "Requests/s by version and protocol",
                [
                    (
                        f"sum by (model, version, protocol) ({rate})",
                        "{{model}} v{{version}} {{protocol}}",
                    )
                ],
                "reqps",
            )
        )
        .with_row(Row("Latency and errors"))
        .with_panel(
            timeseries_panel(
                "Latency by version",
                [
                    (_quantile(0.5), "p50 {{model}} v{{version}}"),
                    (_quantile(0.99), "p99 {{model}} v{{version}}"),
                ],
                "s",
            )
        )
        .with_panel(
            timeseries_panel(
                "Error ratio by version",
                [
                    (
                        f"sum by (model, version) (rate({REQUESTS}{{{SEL}, {ERRORS}}}{RATE})) / sum by (model, version) ({rate})",
                        "{{model}} v{{version}}",
                    )
                ],
                "percentunit",
            )
        )
        .with_panel(
            timeseries_panel(
                "Responses by status",
                [
                    (
                        f"sum by (model, version, status) ({rate})",
                        "{{model}} v{{version}} {{status}}",
                    )
                ],
                "reqps",
                width=24,
            )
        )
    )
