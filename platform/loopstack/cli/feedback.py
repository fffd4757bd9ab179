"""`loopstack feedback send|rebuild` and `loopstack quality MODEL`: clients of the feedback API."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loopstack.cli.errors import UnreadableOutcomes
from loopstack.cli.output import console, err_console, fail_on_errors
from loopstack.client import LoopstackClient
from loopstack.core.errors import InvalidInput
from loopstack.core.settings import Settings

__all__ = ["app", "quality", "read_items"]

app = typer.Typer(help="Send outcomes and rebuild the feedback read model.", no_args_is_help=True)

_CHUNK = 1000
_COLUMNS = ("prediction_id", "outcome", "observed_at", "source", "model", "event_time")
_SHOWN = (
    "rmse",
    "mae",
    "mape",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "macro_f1",
    "auc",
    "log_loss",
    "calibration_error",
    "override_rate",
)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0][:200] if lines else type(exc).__name__).rstrip(".")


def _read_frame(path: Path) -> Any:
    import pandas as pd
    from pyarrow import ArrowException

    kind = path.suffix.lower()
    if kind not in (".csv", ".parquet", ".pq"):
        raise UnreadableOutcomes(path, f"{kind or 'no extension'} is not .csv or .parquet")
    if not path.exists():
        raise UnreadableOutcomes(path, "no such file")
    if not path.is_file():
        raise UnreadableOutcomes(path, "not a file")
    try:
        if kind == ".csv":
            return pd.read_csv(path, dtype={"prediction_id": str})
        return pd.read_parquet(path)
    except (OSError, ValueError, TypeError, ArrowException) as exc:
        # A truncated parquet, binary bytes in a CSV, a ragged row: the file's fault, not ours.
        what = "CSV" if kind == ".csv" else "parquet"
        raise UnreadableOutcomes(path, f"not a valid {what} file ({_first_line(exc)})") from exc


def read_items(path: Path, entity_columns: list[str]) -> list[dict[str, Any]]:
    """Feedback items from a CSV or parquet file.

    Columns: `prediction_id`, `outcome`, `observed_at`, optional `source`, `model`,
    `event_time`, and the entity key either as JSON text in `entity_key` or as the columns
    named by `entity_columns`. Empty cells are left out. Raises UnreadableOutcomes (one line
    naming the file and the fix) if the file is missing, broken or lacks those columns.
    """
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    needed = ["outcome", "observed_at", *entity_columns]
    if "prediction_id" not in columns and "event_time" not in columns:
        needed.insert(0, "prediction_id")
    missing = [c for c in needed if c not in columns]
    if missing:
        found = ", ".join(columns[:10]) + (", ..." if len(columns) > 10 else "")
        raise UnreadableOutcomes(
            path, f"no column(s) {', '.join(missing)} (found: {found or 'none'})"
        )
    items = []
    for row, record in enumerate(frame.to_dict(orient="records"), start=1):
        item = {k: _clean(record.get(k)) for k in _COLUMNS if _clean(record.get(k)) is not None}
        if entity_columns:
            item["entity_key"] = {c: _clean(record[c]) for c in entity_columns}
        elif _clean(record.get("entity_key")) is not None:
            try:
                item["entity_key"] = json.loads(str(record["entity_key"]))
            except ValueError:
                raise UnreadableOutcomes(path, f"row {row}: entity_key is not JSON") from None
        items.append(item)
    return items


@app.command("send")
def send(
    ctx: typer.Context,
    # Checked by read_items, so a missing file is one line naming the fix (not a usage box).
    file: Annotated[Path, typer.Argument(help="CSV or parquet")],
    entity: Annotated[
        list[str] | None,
        typer.Option("--entity", help="Column of the entity key (repeat for a compound key)"),
    ] = None,
) -> None:
    """Send the outcomes of FILE; rejected rows are listed (exit 2 if any)."""
    with fail_on_errors():
        items = read_items(file, entity or [])
        accepted = rejected = 0
        with LoopstackClient.from_settings(_settings(ctx)) as client:
            for start in range(0, len(items), _CHUNK):
                chunk = items[start : start + _CHUNK]
                try:
                    answer = client.post("/v1/feedback", {"items": chunk})
                except InvalidInput as exc:
                    if "rejected" not in exc.message:
                        raise
                    rejected += len(chunk)
                    err_console.print(f"rows {start + 1}-{start + len(chunk)}: {exc.message}")
                    continue
                accepted += answer["accepted"]
                rejected += answer["rejected"]
                for item in answer["items"]:
                    if item["status"] == "rejected":
                        err_console.print(
                            f"row {start + item['index'] + 1}: {item['reason']}", highlight=False
                        )
    console.print(f"{accepted} outcome(s) accepted, {rejected} rejected")
    if rejected:
        raise typer.Exit(2)


@app.command("rebuild")
def rebuild(ctx: typer.Context) -> None:
    """Rebuild the read model (joins, windows) from the events the log retains."""
    with fail_on_errors(), LoopstackClient.from_settings(_settings(ctx)) as client:
        result = client.post("/v1/feedback/rebuild")
    console.print(
        f"rebuilt from {result['records']} events: {result['applied']} applied, "
        f"{result['duplicates']} duplicates, {result['skipped']} skipped"
    )


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def quality(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name")],
    version: Annotated[str | None, typer.Option(help="Only this version")] = None,
    route: Annotated[str | None, typer.Option(help="champion, canary or shadow")] = None,
    segment: Annotated[str | None, typer.Option(help="Show this segment column's values")] = None,
    last: Annotated[int, typer.Option(help="Windows per version and route", min=1)] = 10,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of quality over time")] = None,
) -> None:
    """Print the live quality of MODEL per version, route and window (`--plot` draws it)."""
    with fail_on_errors(), LoopstackClient.from_settings(_settings(ctx)) as client:
        data = client.get(
            f"/v1/models/{model}/quality",
            version=version,
            route=route,
            segment=segment,
            last=None if plot else last,
        )
    windows = data["windows"]
    shown = [m for m in _SHOWN if any(w["metrics"].get(m) is not None for w in windows)]
    table = Table(title=f"live quality of {model}")
    for column in ("version", "route", "window", "end", "size", *shown):
        table.add_column(column, justify="right" if column not in ("route", "end") else "left")
    kept = windows if not plot else windows[-last:]
    for w in kept:
        table.add_row(
            w["version"],
            w["route"],
            str(w["window"]),
            w["end"],
            str(w["size"]),
            *(_fmt(w["metrics"].get(m)) for m in shown),
        )
        for column, values in (w["segments"] if segment else {}).items():
            for value, metrics in values.items():
                table.add_row(
                    "",
                    f"  {column}={value}",
                    "",
                    "",
                    _fmt(metrics.get("count")),
                    *(_fmt(metrics.get(m)) for m in shown),
                )
    console.print(table)
    joined = ", ".join(f"v{j['version']} {j['route']}: {j['joined']}" for j in data["joined"])
    console.print(f"joined predictions: {joined or 'none'}")
    for failed in data.get("failed_windows", []):
        console.print(
            f"window {failed['window']} of v{failed['version']} {failed['route']} has no "
            f"metrics: {failed['reason']}",
            style="red",
            markup=False,
        )
    if plot:
        write_plot(model, windows, shown, plot)
        console.print(f"wrote {plot}")


def write_plot(model: str, windows: list[dict[str, Any]], metrics: list[str], path: Path) -> None:
    """A PNG with one panel per metric: each version and route over window end time."""
    from datetime import datetime

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = metrics or ["count"]
    fig, axes = plt.subplots(
        len(metrics), 1, figsize=(9, 2.4 * len(metrics)), sharex=True, squeeze=False
    )
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for w in windows:
        series.setdefault((w["version"], w["route"]), []).append(w)
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for (version, route), items in sorted(series.items()):
            points = [
                (datetime.fromisoformat(w["end"].replace("Z", "+00:00")), w["metrics"].get(metric))
                for w in items
            ]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=f"v{version} {route}")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"live quality of {model} (per window)")
    axes[0, 0].legend(loc="best", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
