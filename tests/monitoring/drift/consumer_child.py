"""A drift consumer process for the crash test.

Configured by `LOOPSTACK_*` variables and:
  DRIFT_BUNDLE   file holding the detector bundle of bike-demand v1;
  DRIFT_KILL_AT  SIGKILL itself at the N-th handler call (inside the batch transaction);
                 empty: never.
It drains the predictions topic, reports the closed windows and exits.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from loopstack.core.events import Event, Publisher, open_event_log
from loopstack.core.settings import load_settings
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift import DriftConsumer, DriftStore
from loopstack.monitoring.drift.consumer import detector_url
from loopstack.monitoring.drift.windows import WindowAssigner
from sqlalchemy.engine import Connection

from tests.monitoring.drift.builders import MODEL, DictBundles, week_spec

SPEC = week_spec(window_seconds=60 * 24 * 3600)


def main() -> None:
    settings = load_settings()
    log = open_event_log(settings)
    store = DriftStore.from_settings(settings)
    publisher = Publisher.open(settings, log, "drift-test")
    bundles = DictBundles({(MODEL, "1"): Path(os.environ["DRIFT_BUNDLE"]).read_bytes()})
    client = DetectorClient(detector_url(settings))
    consumer = DriftConsumer(
        settings, log, store, client, bundles, specs=lambda _m: SPEC, publisher=publisher
    )
    kill_at = int(os.environ.get("DRIFT_KILL_AT") or 0)
    calls = [0]
    apply = WindowAssigner.__call__

    def handler(self: WindowAssigner, event: Event, conn: Connection) -> None:
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        apply(self, event, conn)

    WindowAssigner.__call__ = handler  # type: ignore[method-assign]
    # A killed predecessor keeps its partitions until its group session times out (1 s here).
    consumer.drain(idle_polls=8)
    consumer.sweep()
    consumer.close()
    publisher.close(timeout=30)
    client.close()
    store.close()
    log.close()


if __name__ == "__main__":
    main()
