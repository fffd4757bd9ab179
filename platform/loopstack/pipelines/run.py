"""Run a prepared pipeline run in this process: `python -m loopstack.pipelines.run --run-dir D`.

The embedded backend starts this in its own process group and returns at once; SIGINT or
SIGTERM stops every step's child process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from loopstack.core.errors import LoopstackError
from loopstack.core.settings import load_settings
from loopstack.pipelines.errors import StepFailed
from loopstack.pipelines.loader import load_pipeline
from loopstack.pipelines.runner import EmbeddedRunner
from loopstack.pipelines.state import RunState
from loopstack.registry.timeouts import use_mlflow_timeouts

__all__ = ["main"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the tasks of the run directory's state; exit 0, 1 (a step failed) or 130 (stopped)."""
    parser = argparse.ArgumentParser(prog="python -m loopstack.pipelines.run")
    parser.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    settings = load_settings()
    use_mlflow_timeouts(settings.mlflow)
    state = RunState.load(args.run_dir)
    state.runner_pid = os.getpid()
    pipeline = load_pipeline(settings.pipelines_dir, state.pipeline)
    try:
        EmbeddedRunner(settings).run(pipeline, state)
    except StepFailed as exc:
        print(exc.message, file=sys.stderr)
        return 1
    except LoopstackError as exc:  # recorded as the run's error: the CLI shows it
        print(exc.message, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pipeline run stopped; every step process was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
