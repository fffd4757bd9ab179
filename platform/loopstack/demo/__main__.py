"""`python -m loopstack.demo [--model bike-demand]`: the closed loop on a year of real data.

Starts a stack of its own (fresh state under `.loopstack-demo/`, free loopback ports), trains the
first model on Jan-Feb 2011 through the pipeline API (the label file ends there), lets the loop
promote it, replays the rest of the year hour by hour from the replay file, sending outcomes
back (the loop's only source of later labels), and writes the report. See README "The closed
loop".
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from loopstack.client import LoopstackClient
from loopstack.core.errors import LoopstackError, Unavailable
from loopstack.core.modelspec import load_model_spec
from loopstack.demo.environment import DemoStack
from loopstack.demo.replay import Progress, Replay, feature_feed, labelled_history
from loopstack.demo.report import write_report
from loopstack.demo.summary import DemoResults, baselines, collect, summary_rows, weekly_oracle

console = Console()

# The oracle may still be fitting when the replay ends (one niced thread); past this, give up.
ORACLE_WAIT_S = 900


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loopstack.demo", description=__doc__)
    parser.add_argument("--model", default="bike-demand")
    parser.add_argument(
        "--train-until",
        default="2011-03-01",
        help="first model: Jan 1 .. this date (the bike label file ends on 2011-03-01)",
    )
    parser.add_argument("--until", default="2012-01-01", help="replay up to this date (exclusive)")
    parser.add_argument(
        "--sabotage-at",
        default="2011-06-01",
        help="first day a broken retraining may start ('' = never)",
    )
    parser.add_argument(
        "--pace", type=float, default=0.0, help="extra wall seconds per simulated day"
    )
    parser.add_argument("--state-dir", type=Path, default=Path(".loopstack-demo"))
    parser.add_argument(
        "--report", type=Path, default=None, help="report path (default: STATE_DIR/report.html)"
    )
    parser.add_argument(
        "--picture", type=Path, default=None, help="also save the main plot as PNG here"
    )
    parser.add_argument("--keep", action="store_true", help="leave the demo stack running")
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=Path.cwd(),
        help="holds models/, pipelines/, feature_repo/",
    )
    return parser.parse_args(argv)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _wait_for_champion(client: LoopstackClient, serving_url: str, model: str, run_id: str) -> str:
    """Wait for the first run to finish, the loop to promote it, and the server to load it."""
    shown = -1
    while (run := client.get(f"/v1/pipelines/runs/{run_id}"))["status"] == "running":
        done = sum(t["status"] in ("succeeded", "cached") for t in run["tasks"])
        if done != shown:
            console.print(f"  training the first model: {done}/{len(run['tasks'])} steps done")
            shown = done
        time.sleep(0.5)
    if run["status"] != "succeeded":
        raise Unavailable(f"the first training run {run_id} {run['status']}: {run['error']}")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            split = client.get(f"/v1/models/{model}/traffic")
            ready = (
                httpx.get(f"{serving_url}/v2/models/{model}/ready", timeout=5).status_code == 200
            )
        except (LoopstackError, httpx.HTTPError):  # not deployed yet: the loop promotes it soon
            ready = False
        if ready:
            return str(split["split"]["champion"])
        time.sleep(0.5)
    raise Unavailable(
        "the first model was not deployed and ready within three minutes; see logs/loop.log "
        "and logs/serving.log in the demo's state directory"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the demo end to end."""
    try:
        run_demo(_parse(argv))
    except LoopstackError as exc:
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise SystemExit(exc.exit_code) from None


def run_demo(
    args: argparse.Namespace, extra_env: dict[str, str] | None = None
) -> tuple[DemoResults, Path, DemoStack]:
    """Start the stack, train, replay, summarise; return the results, the report and the stack."""
    started = time.monotonic()
    project = args.project_dir.resolve()
    stack = DemoStack(project, (project / args.state_dir).resolve(), extra_env)
    settings = stack.settings()
    spec = load_model_spec(settings.models_dir, args.model)
    console.rule(f"[bold]Loopstack closed-loop demo: {spec.name}")
    console.print(f"starting a demo stack in {stack.state_dir} (free loopback ports)")
    stack.up()
    # Spawned, not forked: a forked child deadlocks in dask's thread pool (Feast's offline
    # retrieval) once the parent process has used it, as a test session has.
    background = multiprocessing.get_context("spawn").Pool(1)
    finished = False
    try:
        with LoopstackClient.from_settings(settings) as client:
            # Without a feed, the features come from the online store by entity key (customer
            # snapshots, taken at request time): load them for the whole replay.
            feed = feature_feed(settings.feature_repo_dir, spec)
            if feed is None:
                client.post("/v1/features/materialize", {"start": "2011-01-01", "end": args.until})
            # The first model from the label file; the loop's retrainings then follow the spec's
            # `training.labels` (bike-demand: the outcomes the replay sends back, only).
            run = client.post("/v1/pipelines/train/runs", {"params": {
                "model": spec.name, "start": "2011-01-01", "end": args.train_until,
                "as_of": f"{args.train_until}T00:00:00Z", "labels": "all"}})  # fmt: skip
            serving_url = f"http://{settings.host}:{settings.serving.rest_port}"
            champion = _wait_for_champion(client, serving_url, spec.name, run["run_id"])
            console.print(
                f"  first model v{champion} trained on 2011-01-01 .. {args.train_until} is the champion"
            )
            rows = labelled_history(settings.feature_repo_dir, spec)
            oracle = background.apply_async(
                weekly_oracle, (settings, spec, _utc(args.train_until), _utc(args.until))
            )
            replay = Replay(
                client, serving_url, spec, rows,
                pace_s=args.pace, feed=feed, sabotage_at=_utc(args.sabotage_at) if args.sabotage_at else None,
                on_day=_show,
            )  # fmt: skip
            try:
                replay.run(_utc(args.train_until), _utc(args.until))
            finally:
                replay.close()
            console.print()
            time.sleep(5)  # the consumers apply the last outcomes
            history, predictions, drift = collect(client, spec.name)
        results = DemoResults(spec, history, predictions, drift)
        console.print(
            "scoring the served requests with the static and the weekly-retrained oracle model"
        )
        try:
            weekly = oracle.get(timeout=ORACLE_WAIT_S)
        except multiprocessing.TimeoutError:
            raise Unavailable(
                f"the weekly oracle did not finish within {ORACLE_WAIT_S} s of the replay's end "
                "(it fits on one niced thread): free some CPU or replay a shorter --until"
            ) from None
        baselines(settings, spec, results, champion, weekly)
        finished = True
    finally:
        background.terminate()
        if not (args.keep and finished):  # a failed demo never leaves its stack behind
            stack.down()
    summary = summary_rows(results)
    table = Table(
        "figure",
        "value",
        title=f"the closed loop on {spec.name}, {args.train_until} .. {args.until}",
    )
    for name, value in summary:
        table.add_row(name, value)
    console.print(table)
    report = args.report or stack.state_dir / "report.html"
    images = write_report(results, summary, report)
    if args.picture:
        args.picture.write_bytes(images[0])
    console.print(f"report: {report}  ({time.monotonic() - started:.0f} s in all)")
    return results, report, stack


_shown: dict[str, str] = {}


def _show(progress: Progress) -> None:
    """One line per simulated week, whenever the loop changes phase, and for each new note."""
    day = progress.day.date() if progress.day else None
    notes = progress.notes[int(_shown.get("notes", "0")) :]
    weekly = day is not None and day.weekday() == 0 and _shown.get("day") != str(day)
    if day is None or (not weekly and _shown.get("phase") == progress.phase and not notes):
        return
    _shown.update(day=str(day), phase=progress.phase, notes=str(len(progress.notes)))
    console.print(
        f"  {day}  requests {progress.requests:5d}"
        + (f" ({progress.failed} failed)" if progress.failed else "")
        + f"  outcomes {progress.outcomes:5d}  "
        f"loop: {progress.phase}" + "".join(f"  ({n})" for n in notes),
        highlight=False,
    )


if __name__ == "__main__":
    main()
