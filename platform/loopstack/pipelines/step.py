"""Run one step: `python -m loopstack.pipelines.step --pipeline P --step S --run-dir D ...`.

This is the command of the step's container in Argo and of its child process in the embedded
runner: the same arguments in both.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from loopstack.core.errors import LoopstackError, is_transient
from loopstack.core.settings import load_settings
from loopstack.pipelines.context import StepContext
from loopstack.pipelines.errors import PERMANENT_FAILURE_EXIT
from loopstack.pipelines.loader import load_pipeline
from loopstack.pipelines.tracking import step_run

__all__ = ["main", "FAILURE_FILE"]

FAILURE_FILE = "failure.txt"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loopstack.pipelines.step")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--step", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--branch", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the step; exit 0 on success, 1 on a failure a retry may cure, `PERMANENT_FAILURE_EXIT`
    on one it cannot; the reason is in the step's `failure.txt` and on the last stderr line."""
    args = _parse(argv)
    settings = load_settings()
    pipeline = load_pipeline(settings.pipelines_dir, args.pipeline)
    step = pipeline.get(args.step)
    params = dict(item.split("=", 1) for item in args.param)
    branch = args.branch if step.sweep is not None else None
    ctx = StepContext(settings, pipeline.name, step.name, args.run_dir.resolve(), params, branch)
    try:
        with step_run(ctx):
            step.fn(ctx)
    except LoopstackError as exc:
        ctx.output(FAILURE_FILE).write_text(f"{type(exc).__name__}: {exc.message}")
        print(f"{type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1 if is_transient(exc) else PERMANENT_FAILURE_EXIT
    except Exception as exc:
        traceback.print_exc()
        ctx.output(FAILURE_FILE).write_text(f"{type(exc).__name__}: {exc}")
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1 if is_transient(exc) else PERMANENT_FAILURE_EXIT
    ctx.output(FAILURE_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
