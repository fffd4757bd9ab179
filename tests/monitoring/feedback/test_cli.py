"""`loopstack feedback send`, `feedback rebuild`, `quality MODEL [--plot]` and `reviews`
against a real HTTP server running the feedback routes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from fastapi import FastAPI
from loopstack.api.errors import install_error_handlers
from loopstack.api.routes.feedback import router
from loopstack.cli import feedback, reviews
from loopstack.core.events import EventLog, Publisher
from loopstack.core.events.topics import PREDICTIONS
from loopstack.core.settings import Settings
from loopstack.monitoring.feedback import ModelCatalog, ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.service import FeedbackService
from typer.testing import CliRunner

from tests.cli.wiring import cli_for
from tests.monitoring.feedback.builders import bike_rows, bike_scenario, spec
from tests.monitoring.feedback.test_join import append
from tests.monitoring.feedback.test_reviews import credit_prediction
from tests.servers import asgi_server

CLI_GROUPS = {"feedback": feedback.app, "reviews": reviews.app}

CATALOG = ModelCatalog(
    specs={
        "bike-demand": spec("bike-demand", window_size=5),
        "credit-default": spec("credit-default"),
    }
)


@pytest.fixture
def api_settings(
    settings: Settings, event_log: EventLog, read_model: ReadModel
) -> Iterator[Settings]:
    """Serve the feedback routes on a free loopback port; settings pointing the CLI at them."""
    publisher = Publisher.open(settings, event_log, "api-cli-test")
    app = FastAPI()
    install_error_handlers(app)
    service = FeedbackService(settings, read_model, event_log, publisher, catalog=CATALOG)
    app.include_router(router(SimpleNamespace(feedback=service)))
    try:
        with asgi_server(app) as url:
            yield settings.model_copy(update={"api": settings.api.model_copy(update={"url": url})})
    finally:
        publisher.close(timeout=5)


@pytest.mark.parametrize("read_model_url", ["sqlite"], indirect=True)
def test_send_rebuild_and_quality(
    api_settings: Settings,
    event_log: EventLog,
    read_model: ReadModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feedback.console, "width", 250)  # the test's terminal is narrow
    append(event_log, PREDICTIONS, bike_scenario(n=20).predictions)
    consumer = FeedbackConsumer(api_settings, event_log, read_model, catalog=CATALOG)
    consumer.drain()
    rows = bike_rows(20, start=500)
    frame = pd.DataFrame(
        {
            "prediction_id": [f"bike-{i}" for i in range(20)],
            "outcome": rows["bikers"],
            "observed_at": "2026-11-02T00:00:00Z",
        }
    )
    frame.loc[7, "outcome"] = None  # a row without its outcome is rejected, the rest go
    frame.to_csv(tmp_path / "outcomes.csv", index=False)
    cli, runner = cli_for(api_settings, CLI_GROUPS, {"quality": feedback.quality}), CliRunner()
    sent = runner.invoke(cli, ["feedback", "send", str(tmp_path / "outcomes.csv")])
    assert sent.exit_code == 2, sent.output
    assert "19 outcome(s) accepted, 1 rejected" in sent.output and "row 8" in sent.output
    time.sleep(0.3)  # the API's outbox sends in the background
    consumer.drain()
    shown = runner.invoke(cli, ["quality", "bike-demand", "--segment", "season"])
    assert shown.exit_code == 0, shown.output
    assert "rmse" in shown.output and "season=" in shown.output and "shadow" in shown.output
    png = tmp_path / "quality.png"
    plotted = runner.invoke(cli, ["quality", "bike-demand", "--plot", str(png)])
    assert plotted.exit_code == 0, plotted.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rebuilt = runner.invoke(cli, ["feedback", "rebuild"])
    assert rebuilt.exit_code == 0 and "59 applied" in rebuilt.output  # 40 predictions + 19
    consumer.close()


@pytest.mark.parametrize("read_model_url", ["sqlite"], indirect=True)
def test_reviews_lists_the_queue_and_records_a_decision(
    api_settings: Settings,
    event_log: EventLog,
    read_model: ReadModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reviews.console, "width", 250)
    append(
        event_log,
        PREDICTIONS,
        [credit_prediction(0, 0.45, True), credit_prediction(1, 0.02, False)],
    )
    consumer = FeedbackConsumer(api_settings, event_log, read_model, catalog=CATALOG)
    consumer.drain()
    runner, cli = CliRunner(), cli_for(api_settings, CLI_GROUPS, {"quality": feedback.quality})

    listed = runner.invoke(cli, ["reviews", "--model", "credit-default"])
    assert listed.exit_code == 0, listed.output
    assert "c-0" in listed.output and "low_margin" in listed.output
    assert "c-1" not in listed.output and "1 pending, 0 decided" in listed.output

    decided = runner.invoke(
        cli, ["reviews", "decide", "c-0", "--outcome", "1", "--note", "paid late"]
    )
    assert decided.exit_code == 0 and "accepted" in decided.output, decided.output
    refused = runner.invoke(cli, ["reviews", "decide", "c-1", "--outcome", "1"])
    assert refused.exit_code != 0 and "not in the review queue" in refused.output

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        consumer.drain()
        after = runner.invoke(cli, ["reviews", "--status", "decided"])
        if "c-0" in after.output:
            break
    assert "1 overridden (override rate 100.0%)" in after.output, after.output
