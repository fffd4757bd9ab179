"""The loop report: one self-contained HTML file (inline PNGs, no scripts, no web fonts).

Plots, stacked at fixed sizes so a screenshot can be checked region by region: live error per
version over time with the decisions as markers, drift p-values per feature, the traffic split.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from loopstack.demo.summary import DemoResults

__all__ = [
    "PLOT_HEIGHT_PX",
    "PLOT_TITLES",
    "PLOT_WIDTH_PX",
    "HEADER_HEIGHT_PX",
    "FIGURE_GAP_PX",
    "write_report",
]

PLOT_WIDTH_PX, PLOT_HEIGHT_PX = 1200, 400
HEADER_HEIGHT_PX, FIGURE_GAP_PX = 90, 40
PLOT_TITLES = ("live error per version", "drift p-values per feature", "traffic split")
_ROUTE_STYLES = {"champion": "-", "canary": ":", "shadow": "--"}
"""Line style per route (colour per version)."""
_MARKERS = {"promoted": ("^", "tab:green"), "rolled_back": ("X", "tab:red"),
            "trigger_fired": ("|", "tab:orange")}  # fmt: skip


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _figure() -> tuple[Any, Any]:
    fig, ax = plt.subplots(figsize=(PLOT_WIDTH_PX / 100, PLOT_HEIGHT_PX / 100), dpi=100)
    fig.subplots_adjust(left=0.06, right=0.86, top=0.9, bottom=0.12)
    return fig, ax


def _times(values: Sequence[str]) -> pd.DatetimeIndex:
    return pd.to_datetime(list(values), utc=True).tz_convert(None)


def _legend_key(label: str) -> tuple[int, int, str]:
    """Versions in numeric order, then the rest."""
    head = label.split()[0]
    if head.startswith("v") and head[1:].isdigit():
        return (0, int(head[1:]), label)
    return (1, 0, label)


def _decision_markers(ax: Any, decisions: list[dict[str, Any]], y: float) -> None:
    for kind, (marker, color) in _MARKERS.items():
        chosen = [d for d in decisions if d["kind"] == kind]
        if chosen:
            ax.scatter(_times([d["at"] for d in chosen]), [y] * len(chosen), marker=marker,
                       color=color, s=90, zorder=5, label=kind.replace("_", " "))  # fmt: skip


def error_plot(results: DemoResults) -> str:
    """Daily error (RMSE, or Brier for a classifier) per version and route, decisions marked."""
    fig, ax = _figure()
    rows = results.predictions[
        results.predictions["outcome"].notna() & (results.predictions["status"] == "ok")
    ]
    squared = (rows["score"] - rows["outcome"]) ** 2
    day = rows["request_time"].dt.tz_convert(None).dt.floor("D")
    grouped = squared.groupby([rows["version"], rows["route"], day]).mean()
    label = "RMSE" if results.spec.task == "regression" else "Brier score"
    top = 0.0
    versions = sorted({str(v) for v in rows["version"]}, key=lambda v: (len(v), v))
    colours = plt.get_cmap("tab10")
    for (version, route), series in grouped.groupby(level=[0, 1]):
        values = (
            np.sqrt(series.to_numpy()) if results.spec.task == "regression" else series.to_numpy()
        )
        colour = colours(versions.index(str(version)) % 10)
        ax.plot(series.index.get_level_values(2), values, _ROUTE_STYLES.get(str(route), "-"),
                color=colour, lw=1.2, label=f"v{version} {route}")  # fmt: skip
        top = max(top, float(np.nanpercentile(values, 98)) if len(values) else 0.0)
    if results.spec.task == "regression" and results.static is not None:
        served = results.served
        week = served["request_time"].dt.tz_convert(None).dt.to_period("W").dt.start_time.to_numpy()
        for name, values, style in (("loop, weekly", served["score"].to_numpy(dtype=float), "k-"),
                                    ("static model, weekly", results.static, "k--")):  # fmt: skip
            error = pd.Series((values - served["outcome"].to_numpy(dtype=float)) ** 2, index=week)
            weekly = np.sqrt(error.groupby(level=0).mean())
            ax.plot(weekly.index, weekly.to_numpy(), style, lw=2.2, label=name, alpha=0.8)
    _decision_markers(ax, results.history["decisions"], top * 1.05 or 1.0)
    ax.set_ylim(0, (top or 1.0) * 1.15)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: _legend_key(labels[i]))
    fig.subplots_adjust(right=0.74)  # room for a two-column legend of every version
    ax.legend([handles[i] for i in order], [labels[i] for i in order],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncol=2)  # fmt: skip
    ax.set_title(f"{PLOT_TITLES[0]}: daily {label} of {results.spec.name}")
    ax.set_ylabel(label)
    return _png(fig)


def drift_plot(results: DemoResults) -> str:
    """P-value of each watched feature per drift window, with the detection threshold."""
    fig, ax = _figure()
    points: dict[str, list[tuple[Any, float]]] = {}
    threshold = None
    for window in results.drift:
        for test in window["features"]:
            if test["p_value"] is None:
                continue
            points.setdefault(test["feature"], []).append((window["end"], test["p_value"]))
            threshold = test.get("threshold") or threshold
    for feature, values in sorted(points.items()):
        values.sort()
        ax.plot(
            _times([v[0] for v in values]),
            [max(v[1], 1e-12) for v in values],
            ".-",
            lw=1,
            label=feature,
        )
    if threshold:
        ax.axhline(threshold, color="black", ls=":", lw=1, label=f"threshold {threshold:.2g}")
    ax.set_yscale("log")
    ax.set_title(f"{PLOT_TITLES[1]} (per window, log scale)")
    ax.set_ylabel("p-value")
    if points:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)


def traffic_plot(results: DemoResults) -> str:
    """The challenger's share of traffic over time (shadow shown as a mirrored band)."""
    fig, ax = _figure()
    # A promotion or rollback moves serving itself (one decision carrying its traffic).
    changes = [d for d in results.history["decisions"] if d["kind"] == "traffic_changed"
               or (d["kind"] in ("promoted", "rolled_back") and d.get("traffic"))]  # fmt: skip
    times, share, shadow = [], [], []
    for d in changes:
        challenger = (d.get("evidence") or {}).get("mode")
        traffic = d.get("traffic") or {}
        values = sorted(traffic.values())
        times.append(d["at"])
        share.append(values[0] if challenger == "canary" and len(values) == 2 else 0.0)
        shadow.append(100.0 if challenger == "shadow" else 0.0)
    if times:
        end = results.predictions["request_time"].max().tz_convert(None)
        x = [*list(_times(times)), end]
        ax.step(
            x,
            share + share[-1:],
            where="post",
            color="tab:blue",
            lw=2,
            label="challenger share (canary) %",
        )
        ax.fill_between(
            x,
            shadow + shadow[-1:],
            step="post",
            color="tab:purple",
            alpha=0.15,
            label="shadow (mirrored)",
        )
    _decision_markers(ax, results.history["decisions"], 103)
    ax.set_ylim(0, 110)
    ax.set_title(f"{PLOT_TITLES[2]}: challenger share of requests")
    ax.set_ylabel("% of requests")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(results: DemoResults, summary: list[tuple[str, str]], path: Path) -> list[bytes]:
    """Write the HTML report; return the PNGs (the first one is the README's picture)."""
    images = [error_plot(results), drift_plot(results), traffic_plot(results)]
    figures = "".join(
        f'<figure style="margin:0 0 {FIGURE_GAP_PX}px 0;height:{PLOT_HEIGHT_PX}px">'
        f'<img alt="{html.escape(title)}" width="{PLOT_WIDTH_PX}" height="{PLOT_HEIGHT_PX}" '
        f'style="display:block" src="data:image/png;base64,{data}"></figure>'
        for title, data in zip(PLOT_TITLES, images, strict=True)
    )
    decisions = [(d["at"][:16], d["kind"], d["version"] or "", d["reason"])
                 for d in results.history["decisions"] if d["kind"] != "alias_moved"]  # fmt: skip
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Loopstack loop report: {html.escape(results.spec.name)}</title>
<style>
body {{ margin: 0; font-family: sans-serif; font-size: 14px; color: #222; }}
header {{ height: {HEADER_HEIGHT_PX}px; box-sizing: border-box; padding: 16px 24px; margin: 0; }}
header h1 {{ font-size: 22px; margin: 0 0 6px 0; }}
main {{ padding: 0; }}
section {{ padding: 0 24px 24px 24px; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
</style></head><body>
<header><h1>The closed loop on {html.escape(results.spec.name)}</h1>
<div>Every figure below is recomputed from the decision events and the feedback read model.</div></header>
<main>{figures}
<section><h2>Summary</h2>{_table(summary, ("figure", "value"))}
<h2>Decisions</h2>{_table(decisions, ("model time", "decision", "version", "reason"))}</section>
</main></body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return [base64.b64decode(i) for i in images]
