"""The embedded stack's supervisor process: `python -m loopstack.cli.supervise`.

`loopstack up` starts it last and `loopstack down` stops it first; in between it restarts any
component that dies, with back-off (`core/watchdog.py`), and logs each restart to its own log.
"""

from __future__ import annotations

import logging

from loopstack.cli.stack import stack_supervisor, supervised
from loopstack.core.processes import stop_on_signals
from loopstack.core.settings import load_settings
from loopstack.core.watchdog import Watchdog

__all__ = ["main"]


def main() -> None:
    """Watch the stack's components until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    stop = stop_on_signals()
    Watchdog(stack_supervisor(settings), supervised(settings)).run(stop)


if __name__ == "__main__":
    main()
