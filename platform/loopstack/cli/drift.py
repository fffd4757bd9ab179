"""`loopstack drift MODEL [--plot PATH]`: a client of `GET /v1/models/{name}/drift`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient
from loopstack.core.settings import Settings

__all__ = ["drift", "write_plot"]


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def drift(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name")],
    version: Annotated[str | None, typer.Option(help="Only this version")] = None,
    last: Annotated[int, typer.Option(help="Windows to show (newest first)", min=1)] = 5,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG of each feature's p-value over time")
    ] = None,
) -> None:
    """Print the latest drift windows of MODEL per feature (`--plot` draws p-values over time)."""
    settings: Settings = ctx.obj
    with fail_on_errors(), LoopstackClient.from_settings(settings) as client:
        data = client.get(
            f"/v1/models/{model}/drift", version=version, last=max(last, 50) if plot else last
        )
    windows: list[dict[str, Any]] = data["windows"]
    table = Table(title=f"drift of {model} (newest window first)")
    for column in ("version", "window", "end", "size", "status", "feature", "test"):
        table.add_column(column)
    for column in ("statistic", "effect", "p-value", "threshold", "drifted"):
        table.add_column(column, justify="right")
    for w in windows[:last]:
        head = [w["version"], str(w["window_no"]), w["end"], str(w["sample_size"]), w["status"]]
        if not w["features"]:
            table.add_row(*head, "-", "-", "-", "-", "-", "-", "no")
        for i, f in enumerate(w["features"]):
            table.add_row(
                *(head if i == 0 else [""] * len(head)),
                f["feature"],
                f["test"] or "-",
                _fmt(f["statistic"]),
                _fmt(f["effect"]),
                _fmt(f["p_value"]),
                _fmt(f["threshold"]),
                "[red]yes[/red]" if f["drifted"] else "no",
            )
    console.print(table)
    for w in windows[:last]:
        if w.get("error"):  # given up, not retried: say why
            console.print(f"window {w['window_no']} of v{w['version']} failed: {w['error']}")
    if not windows:
        console.print(f"no drift windows of {model} reported yet")
    if plot:
        write_plot(model, windows, plot)
        console.print(f"wrote {plot}")


def write_plot(model: str, windows: list[dict[str, Any]], path: Path) -> None:
    """A PNG of each feature's p-value per window end (log scale), the threshold dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    ordered = sorted(windows, key=lambda w: w["end"])
    series: dict[str, tuple[list[str], list[float]]] = {}
    thresholds: list[tuple[str, float]] = []
    for w in ordered:
        for f in w["features"]:
            if f["kind"] == "outlier" or f["p_value"] is None:
                continue
            xs, ys = series.setdefault(f["feature"], ([], []))
            xs.append(w["end"])
            ys.append(max(f["p_value"], 1e-300))
            if f["kind"] == "feature" and f["threshold"] is not None:
                thresholds.append((w["end"], f["threshold"]))
    for name, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, marker="o", label=name)
    if thresholds:
        level = min(t for _, t in thresholds)
        ax.axhline(level, color="red", linestyle="--", label=f"threshold {level:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("window end")
    ax.set_ylabel("p-value")
    ax.set_title(f"drift of {model}: p-value per feature")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    if series:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
