"""A publishing process for the outage tests.

EV_MODE=publish: publish EV_COUNT outcome events (values EV_START..) to EV_TOPIC through the
outbox named EV_OUTBOX, print `published`, then wait to be killed.
EV_MODE=drain: open the same outbox, send what is left, print how many remain, exit.
"""

from __future__ import annotations

import os
import time

from loopstack.core.events import Publisher, open_event_log
from loopstack.core.settings import load_settings

from tests.core.events.helpers import outcome


def main() -> None:
    settings = load_settings()
    log = open_event_log(settings)
    publisher = Publisher.open(settings, log, os.environ["EV_OUTBOX"])
    if os.environ["EV_MODE"] == "drain":
        left = publisher.close(timeout=60)
        print(f"remaining {left}", flush=True)
        log.close()
        return
    start, count = int(os.environ["EV_START"]), int(os.environ["EV_COUNT"])
    for i in range(start, start + count, 50):
        publisher.publish(
            os.environ["EV_TOPIC"],
            [outcome(v, key=f"k{v % 13}") for v in range(i, min(i + 50, start + count))],
        )
    print("published", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
