"""A request's deadline: past it, no further step of its work starts.

A management request that changes state sets one (`within`) for the thread doing the work;
the layers below call `check` before each step that calls out or changes something. A caller
that stopped waiting (its answer said "failed") can then never see the change applied later:
the work ends, with 503, at the latest one step's timeout after the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from loopstack.core.errors import Unavailable

__all__ = ["DeadlinePassed", "check", "remaining", "within"]

_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("loopstack_deadline", default=None)
"""(monotonic end, granted seconds) of the current request, if it has one."""


class DeadlinePassed(Unavailable):
    """The request used up its time; nothing further of it was done."""

    def __init__(self, seconds: float, step: str) -> None:
        super().__init__(
            f"the request ran out of its {seconds:g} s before {step}: that step and every later "
            "one were not done; check the state (e.g. `loopstack traffic`) and retry (the CLI "
            "and SDK reuse the request's Idempotency-Key, so it is applied once)"
        )


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Give the work inside this block `seconds`; an enclosing, earlier deadline still holds."""
    end = time.monotonic() + seconds
    current = _DEADLINE.get()
    if current is not None and current[0] < end:
        end, seconds = current
    token = _DEADLINE.set((end, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left to the current deadline (may be negative), or None without one."""
    current = _DEADLINE.get()
    return None if current is None else current[0] - time.monotonic()


def check(step: str) -> None:
    """Raise `DeadlinePassed` if the current request's deadline has passed (no-op without one)."""
    current = _DEADLINE.get()
    if current is not None and time.monotonic() >= current[0]:
        raise DeadlinePassed(current[1], step)
