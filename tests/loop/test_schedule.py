"""Cron schedules on model time."""

from __future__ import annotations

from datetime import datetime

import pytest
from loopstack.core.errors import InvalidInput
from loopstack.loop.schedule import CronSchedule


@pytest.mark.parametrize(("expression", "after", "due"), [
    ("0 3 * * 1", datetime(2011, 3, 1, 12), datetime(2011, 3, 7, 3)),  # next Monday
    ("0 3 1 * *", datetime(2011, 3, 1, 3), datetime(2011, 4, 1, 3)),  # strictly after
    ("*/15 * * * *", datetime(2011, 3, 1, 12, 7), datetime(2011, 3, 1, 12, 15)),
    ("30 6 * * 0,6", datetime(2011, 3, 4), datetime(2011, 3, 5, 6, 30)),  # Saturday
    ("0 0 29 2 *", datetime(2011, 3, 1), datetime(2012, 2, 29)),
])  # fmt: skip
def test_next_firing(expression: str, after: datetime, due: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(after) == due


@pytest.mark.parametrize("bad", ["", "0 3 * *", "61 * * * *", "a b c d e", "0 3 * * 8"])
def test_bad_expressions_name_the_form(bad: str) -> None:
    with pytest.raises(InvalidInput, match="minute hour day-of-month month day-of-week"):
        CronSchedule.parse(bad)


def test_a_replay_after_live_traffic_restarts_the_schedule_on_its_own_clock() -> None:
    weekly = CronSchedule.parse("0 3 * * 1")
    live = datetime(2026, 12, 7, 18)
    assert weekly.due(None, live) is None  # first look
    # The model's clock went back to 2011: nothing is due against today's last look ...
    assert weekly.due(live, datetime(2011, 3, 1, 12)) is None
    # ... and from the replay's own last look on, its Mondays come due as they pass.
    assert weekly.due(datetime(2011, 3, 1, 12), datetime(2011, 3, 6, 23)) is None
    assert weekly.due(datetime(2011, 3, 1, 12), datetime(2011, 3, 7, 4)) == datetime(2011, 3, 7, 3)
