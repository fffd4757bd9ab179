"""Restart the stack's processes when they die, with exponential back-off.

The supervisor process of the embedded stack (`loopstack up` starts it last, `loopstack down`
stops it first) runs a `Watchdog` over the other components. A component counts as stopped on
purpose when it has no pid file (`down` removes it); one whose recorded process is gone died, and
is started again after a back-off that doubles with each death in a row (1 s, 2 s, 4 s, ... up to
`max_backoff_s`) and resets once it has stayed up `stable_s`. Each restart is counted in the
component's pid file, which `loopstack status` shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from loopstack.core.errors import LoopstackError
from loopstack.core.processes import ProcessSpec, Supervisor, port_is_free

__all__ = ["Watchdog"]

log = logging.getLogger(__name__)


@dataclass
class _Track:
    deaths_in_a_row: int = 0
    retry_at: float | None = None
    up_since: float | None = None


class Watchdog:
    """Keeps every recorded component of `specs` running (see the module docstring)."""

    def __init__(
        self,
        supervisor: Supervisor,
        specs: Sequence[ProcessSpec],
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        stable_s: float = 60.0,
    ) -> None:
        self.supervisor = supervisor
        self.specs = list(specs)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self._tracks = {spec.name: _Track() for spec in self.specs}

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Check every `poll_s` until `stop` is set."""
        while not stop.is_set():
            self.check(time.monotonic())
            _reap_children()
            stop.wait(poll_s)

    def check(self, now: float) -> list[str]:
        """One pass: restart the components whose back-off has passed. Returns their names."""
        restarted = []
        for spec in self.specs:
            try:
                if self._check_one(spec, now):
                    restarted.append(spec.name)
            except (LoopstackError, OSError) as exc:  # one component never stops the others
                log.error("supervisor: cannot restart %s: %s", spec.name, exc)
                self._died(self._tracks[spec.name], now)
        return restarted

    def _check_one(self, spec: ProcessSpec, now: float) -> bool:
        track = self._tracks[spec.name]
        current = self.supervisor.read(spec.name)
        if current is None:  # stopped on purpose, or never started
            self._tracks[spec.name] = _Track()
            return False
        if current.alive():
            if track.up_since is None:
                track.up_since = now
            elif now - track.up_since >= self.stable_s:
                track.deaths_in_a_row = 0
            return False
        if track.retry_at is None:
            self._died(track, now)
            log.warning(
                "supervisor: %s (pid %d) died; restarting in %.0fs",
                spec.name,
                current.pid,
                (track.retry_at or now) - now,
            )
        if now < (track.retry_at or now):
            return False
        if spec.port is not None and not port_is_free(spec.host, spec.port):
            self.supervisor.stop_leftovers(current)
            if not port_is_free(spec.host, spec.port):
                self._died(track, now)
                log.error("supervisor: %s: port %d is still taken; retrying later", spec.name,
                          spec.port)  # fmt: skip
                return False
        self.supervisor.clear_dead(spec.name)
        running = self.supervisor.restart(spec, current)
        log.warning("supervisor: restarted %s (pid %d, restart %d)", spec.name, running.pid,
                    running.restarts)  # fmt: skip
        track.retry_at, track.up_since = None, now
        return True

    def _died(self, track: _Track, now: float) -> None:
        delay = min(self.max_backoff_s, self.backoff_s * 2**track.deaths_in_a_row)
        track.deaths_in_a_row += 1
        track.retry_at, track.up_since = now + delay, None


def _reap_children() -> None:
    """Collect the exit status of restarted children that died (no zombies left behind)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass
