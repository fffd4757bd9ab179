"""Unreadable outcome files and topics without dead letters get a one-line answer, never a
traceback: `feedback send` on broken files, `events dlq` (CLI and API) on an empty DLQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from loopstack.api.app import create_app
from loopstack.cli import events, feedback
from loopstack.core.events import OutMessage, open_event_log
from loopstack.core.settings import Settings, load_settings
from typer.testing import CliRunner

from tests.cli.wiring import cli_for
from tests.servers import asgi_server


def _settings(tmp_path: Path) -> Settings:
    return load_settings(
        project_dir=tmp_path, state_dir=tmp_path / "state", events={"backend": "sqlite"}
    )


def _broken_files(folder: Path) -> dict[str, Path]:
    good = pd.DataFrame(
        {"prediction_id": ["p-1", "p-2"], "outcome": [1, 0], "observed_at": ["2026-11-02"] * 2}
    )
    good.to_parquet(folder / "whole.parquet")
    files = {
        "truncated parquet": folder / "truncated.parquet",
        "csv of binary garbage": folder / "garbage.csv",
        "ragged csv": folder / "ragged.csv",
        "empty csv": folder / "empty.csv",
        "csv without the columns": folder / "other.csv",
        "csv named .parquet": folder / "text.parquet",
        "wrong extension": folder / "outcomes.xlsx",
        "missing file": folder / "absent.csv",
        "directory": folder / "dir.csv",
    }
    data = (folder / "whole.parquet").read_bytes()
    files["truncated parquet"].write_bytes(data[: len(data) // 2])
    files["csv of binary garbage"].write_bytes(bytes(range(256)) * 8)
    files["ragged csv"].write_text('prediction_id,outcome\np-1,1\np-2,0,"x",y,z\n')
    files["empty csv"].write_text("")
    files["csv without the columns"].write_text("colour,size\nred,3\n")
    good.to_csv(files["csv named .parquet"], index=False)
    good.to_csv(files["wrong extension"], index=False)
    files["directory"].mkdir()
    return files


def test_feedback_send_on_a_broken_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    # No API runs: the file is refused before any request is sent.
    settings = _settings(tmp_path)
    cli, runner = cli_for(settings, {"feedback": feedback.app, "events": events.app}), CliRunner()
    for case, path in _broken_files(tmp_path).items():
        result = runner.invoke(cli, ["feedback", "send", str(path)])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2, (case, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), case
        assert "Traceback" not in result.output, case
        assert len(lines) == 1, (case, result.output)
        assert str(path) in lines[0] and "give a .csv or .parquet file" in lines[0], case


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Settings]:
    """The real management API on a free loopback port over an SQLite event log."""
    settings = _settings(tmp_path)
    with asgi_server(create_app(settings)) as url:
        yield settings.model_copy(update={"api": settings.api.model_copy(update={"url": url})})


def test_dead_letters_of_a_topic_without_any_are_an_empty_list(api: Settings) -> None:
    log = open_event_log(api)
    try:  # a topic of the user's that has records but no dead letter yet
        log.append([OutMessage("orders", "k", b"{}")])
    finally:
        log.close()
    with httpx.Client(base_url=api.api_url) as http:
        for topic in ("outcomes", "predictions.dlq", "orders"):
            answer = http.get("/v1/events/dlq", params={"topic": topic})
            assert answer.status_code == 200, answer.text
            assert answer.json()["items"] == []
        unknown = http.get("/v1/events/dlq", params={"topic": "outcomez"})
    assert unknown.status_code == 404
    assert "unknown topic 'outcomez'" in unknown.json()["error"]
    assert "outcomes" in unknown.json()["error"] and "predictions" in unknown.json()["error"]

    cli, runner = cli_for(api, {"feedback": feedback.app, "events": events.app}), CliRunner()
    empty = runner.invoke(cli, ["events", "dlq", "outcomes"])
    assert empty.exit_code == 0, empty.output
    assert empty.output.strip() == "no dead letters on outcomes"
    typo = runner.invoke(cli, ["events", "dlq", "outcomez"])
    assert typo.exit_code == 3 and len(typo.output.strip().splitlines()) == 1, typo.output
    assert "known topics: predictions, outcomes" in typo.output
