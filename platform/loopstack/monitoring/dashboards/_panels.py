"""Shared building blocks: the datasource and model variables, and panels with PromQL targets.

Every panel and query names the `${datasource}` variable, so one dashboard works against any
Prometheus the Grafana instance knows.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

__all__ = ["DATASOURCE", "Query", "base", "stat_panel", "timeseries_panel"]

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

Query = tuple[str, str]
"""A PromQL expression and its legend format."""


def _targets(queries: list[Query]) -> list[prometheus.Dataquery]:
    refs = "ABCDEFGHIJ"
    return [
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(refs[i])
        .datasource(DATASOURCE)
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries_panel(
    title: str, queries: list[Query], unit: str, *, description: str = "", width: int = 12
) -> timeseries.Panel:
    """A time series panel of one or more queries."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(width)
    )
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def stat_panel(title: str, query: Query, unit: str, *, width: int = 6) -> stat.Panel:
    """A single-value panel."""
    panel = stat.Panel().title(title).datasource(DATASOURCE).unit(unit).height(4).span(width)
    for target in _targets([query]):
        panel = panel.with_target(target)
    return panel


def _label_variable(name: str, metric: str, *, parent: str = "") -> dashboard.QueryVariable:
    selector = f'{{{parent}=~"${parent}"}}' if parent else ""
    return (
        dashboard.QueryVariable(name)
        .label(name)
        .datasource(DATASOURCE)
        .query(f"label_values({metric}{selector}, {name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def base(uid: str, title: str, description: str, metric: str | None) -> dashboard.Dashboard:
    """A dashboard with the datasource variable, and model and version ones (values from `metric`)."""
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["loopstack"])
        .timezone("utc")
        .refresh("30s")
        .time("now-6h", "now")
        .editable()
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
    )
    if metric is not None:
        board = board.with_variable(_label_variable("model", metric))
        board = board.with_variable(_label_variable("version", metric, parent="model"))
    return board
