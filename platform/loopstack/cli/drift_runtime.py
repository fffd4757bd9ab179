"""`loopstack drift-runtime install|where`: the drift runtime's own environment (offline commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopstack.cli.output import console, fail_on_errors
from loopstack.core.settings import Settings

__all__ = ["app"]

app = typer.Typer(
    help="The drift runtime: alibi-detect in its own environment, for the detector server.",
    no_args_is_help=True,
)


@app.command("install")
def install(
    force: Annotated[bool, typer.Option(help="Reinstall even if it is installed")] = False,
    into: Annotated[
        Path | None,
        typer.Option("--dir", help="Install here instead of $XDG_DATA_HOME/loopstack/"),
    ] = None,
) -> None:
    """Install the drift runtime from the locked requirements the package ships (once per user;
    `loopstack up` does it too when it is missing)."""
    from loopstack.monitoring.drift_env import install_drift_runtime

    with fail_on_errors():
        python = install_drift_runtime(into, force=force, say=console.print)
    if into is not None:
        console.print(f"point the stack at it: LOOPSTACK_DRIFT__PYTHON={python}")


@app.command("where")
def where(ctx: typer.Context) -> None:
    """Print the drift runtime's python the stack uses (exit 1 if none is installed)."""
    from loopstack.monitoring.detector_runtime import drift_python

    settings: Settings = ctx.obj
    with fail_on_errors():
        python = drift_python(settings.drift.python, settings.project_dir.resolve())
    typer.echo(str(python))
