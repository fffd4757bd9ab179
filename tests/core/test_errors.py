"""Errors say whether a retry can cure them, by type (never by their text)."""

from __future__ import annotations

import pytest
from loopstack.core.errors import ConfigurationError, InvalidInput, NotFound, is_transient
from loopstack.features.errors import EmptyWindow
from loopstack.pipelines.errors import DataValidationFailed, TrackingUnavailable


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("bad"),
        NotFound("gone"),
        ConfigurationError("entrypoint missing"),
        DataValidationFailed("3 rows fail"),
        KeyError("column"),
        ValueError("cannot convert"),
        ImportError("no module"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_only_a_fix_cures_is_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


def test_an_empty_window_is_not_transient() -> None:
    from datetime import datetime

    assert not is_transient(EmptyWindow("m", "labels", datetime(2011, 3, 1), datetime(2011, 3, 8)))


@pytest.mark.parametrize(
    "error",
    [
        TrackingUnavailable("http://x", "refused"),
        ConnectionError("reset"),
        TimeoutError("slow"),
        RuntimeError("worker lost"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_may_pass_is_transient(error: BaseException) -> None:
    assert is_transient(error)
