"""Cron schedules (`minute hour day-of-month month day-of-week`) evaluated on model time.

The same expression becomes the Argo CronWorkflow's schedule at scale; the embedded loop fires it
itself. Supported: `*`, numbers, `a-b` ranges, `a,b` lists and `/step`; day of week 0-6 (Sunday 0,
7 is Sunday too). As in cron, when both day fields are restricted either may match.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from loopstack.core.errors import InvalidInput

__all__ = ["CronSchedule"]

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(x) for x in base.split("-", 1))
        else:
            start = end = int(base)
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse; InvalidInput names the expected form."""
        fields = expression.split()
        try:
            if len(fields) != 5:
                raise ValueError(expression)
            parsed = [_field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True)]
        except ValueError:
            raise InvalidInput(
                f"schedule {expression!r} is not a cron expression "
                "(`minute hour day-of-month month day-of-week`, e.g. '0 3 * * 1')"
            ) from None
        weekdays = frozenset(d % 7 for d in parsed[4])
        return cls(expression, parsed[0], parsed[1], parsed[2], parsed[3], weekdays,
                   fields[2] == "*", fields[4] == "*")  # fmt: skip

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays  # Python: Monday 0; cron: Sunday 0
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def due(self, checked: datetime | None, now: datetime) -> datetime | None:
        """The slot that fell due between the last look (`checked`) and `now`, or None.

        A first look, or a model clock that went back (a replay of past days after live
        traffic), restarts the schedule at `now`: slots are due from there on."""
        if checked is None or now < checked:
            return None
        slot = self.next_after(checked)
        return slot if slot <= now else None

    def next_after(self, after: datetime) -> datetime:
        """The first scheduled minute strictly after `after` (within five years)."""
        start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(5 * 366):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        at = day.replace(hour=hour, minute=minute)
                        if at >= start:
                            return at
            day += timedelta(days=1)
        raise InvalidInput(f"schedule {self.expression!r} never fires")
