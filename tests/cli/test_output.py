"""CLI errors say what went wrong in words, never a bare traceback marker."""

from __future__ import annotations

import pytest
import typer
from loopstack.cli.output import fail_on_errors, readable
from loopstack.core.errors import ConfigurationError, InvalidInput


def test_a_message_of_only_markers_shows_its_cause() -> None:
    try:
        try:
            raise ValueError("column 'temp' is missing from the frame")
        except ValueError as cause:
            raise ConfigurationError("    ^^^^^^^^^^\n  ~~~^^^") from cause
    except ConfigurationError as exc:
        assert readable(exc) == "ValueError: column 'temp' is missing from the frame"


def test_marker_lines_are_dropped_and_the_words_kept(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_, fail_on_errors():
        raise InvalidInput("models/x/model.yaml is not valid: [task]\n    task: [regression\n    ^")
    captured = capsys.readouterr().err
    assert exit_.value.exit_code == 2
    assert "is not valid: [task]" in captured and "task: [regression" in captured
    assert "^" not in captured
