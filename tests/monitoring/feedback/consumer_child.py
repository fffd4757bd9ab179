"""A feedback consumer process for the crash test.

Configured by `LOOPSTACK_*` variables and:
  FB_KILL_AT     SIGKILL itself at the N-th handler call (mid-batch, inside the transaction);
                 empty: never;
  FB_JOIN_S      join window of both models (seconds);
  FB_WINDOW      window size of both models.
It drains the log, waits out the join window, sweeps the orphans and exits.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from loopstack.core.events import Event, open_event_log
from loopstack.core.settings import load_settings
from loopstack.monitoring.feedback import ModelCatalog, ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from sqlalchemy.engine import Connection

from tests.monitoring.feedback.builders import spec


def main() -> None:
    settings = load_settings()
    join_s, size = float(os.environ["FB_JOIN_S"]), int(os.environ["FB_WINDOW"])
    catalog = ModelCatalog(
        specs={
            name: spec(name, window_size=size, join_window_s=join_s)
            for name in ("bike-demand", "credit-default")
        }
    )
    log = open_event_log(settings)
    read_model = ReadModel.from_settings(settings)
    consumer = FeedbackConsumer(settings, log, read_model, catalog=catalog)
    kill_at = int(os.environ.get("FB_KILL_AT") or 0)
    calls = [0]
    projector = consumer.projector

    def dying(apply: Callable[[Event, Connection], None]) -> Callable[[Event, Connection], None]:
        def handler(event: Event, conn: Connection) -> None:
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            apply(event, conn)

        return handler

    # The crash hook: the projector's own methods, wrapped (its __call__ dispatches to them).
    projector.apply_prediction = dying(projector.apply_prediction)  # type: ignore[method-assign]
    projector.apply_outcome = dying(projector.apply_outcome)  # type: ignore[method-assign]
    # A killed predecessor keeps its partitions until its group session times out (1 s here).
    consumer.drain(idle_polls=8)
    time.sleep(join_s + 0.5)
    consumer.housekeeping()
    consumer.close()
    read_model.close()
    log.close()


if __name__ == "__main__":
    main()
