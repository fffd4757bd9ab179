"""The `loopstack` command: process control locally, every management command through the API."""

from __future__ import annotations

import json

import typer

from loopstack import __version__
from loopstack.cli import (
    audit,
    auth,
    drift_runtime,
    events,
    features,
    feedback,
    loop,
    models,
    pipelines,
    reviews,
    serving,
    stack_commands,
    why,
)
from loopstack.cli.drift import drift
from loopstack.cli.init import init
from loopstack.cli.output import console, fail_on_errors
from loopstack.core.settings import Settings, load_settings

__all__ = ["app"]

app = typer.Typer(
    name="loopstack",
    help="Loopstack: train, serve, monitor and retrain models in one closed loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Show the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(models.app, name="models")
app.add_typer(pipelines.app, name="pipeline")
app.add_typer(events.app, name="events")
serving.register(app)
app.command("drift")(drift)
app.add_typer(feedback.app, name="feedback")
app.add_typer(features.app, name="features")
app.add_typer(auth.app, name="auth")
app.add_typer(reviews.app, name="reviews")
app.command("audit")(audit.audit)
app.command("quality")(feedback.quality)
app.command("retrain")(loop.retrain)
app.command("history")(loop.history)
app.command("why")(why.why)
app.add_typer(drift_runtime.app, name="drift-runtime")
app.command("init")(init)


@app.callback()
def main(ctx: typer.Context) -> None:
    """Load settings once for the whole command."""
    with fail_on_errors():
        ctx.obj = load_settings()


def settings_of(ctx: typer.Context) -> Settings:
    """The settings loaded by the callback."""
    settings: Settings = ctx.obj
    return settings


@app.command()
def version() -> None:
    """Print the Loopstack version."""
    console.print(__version__)


@app.command()
def up(ctx: typer.Context) -> None:
    """Start the embedded stack on loopback and wait until it is healthy."""
    with fail_on_errors():
        stack_commands.up(settings_of(ctx))


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop exactly the processes `loopstack up` started."""
    with fail_on_errors():
        stack_commands.down(settings_of(ctx))


@app.command()
def status(ctx: typer.Context) -> None:
    """Show each embedded component, its URL and health (exit 1 if any is not healthy)."""
    with fail_on_errors():
        healthy = stack_commands.status(settings_of(ctx))
    if not healthy:
        raise typer.Exit(1)


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration as JSON (secrets hidden)."""
    from loopstack.core.secrets import redacted

    console.print_json(json.dumps(redacted(settings_of(ctx).model_dump(mode="json"))))


@config_app.command("docs")
def config_docs() -> None:
    """Print the configuration reference as a Markdown table (the README's table)."""
    from loopstack.core.settings_doc import settings_table

    typer.echo(settings_table())
