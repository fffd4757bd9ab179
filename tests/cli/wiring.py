"""The CLI wired like `loopstack`, with given settings instead of the environment's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import typer
from loopstack.core.settings import Settings


def cli_for(
    settings: Settings,
    groups: Mapping[str, typer.Typer],
    commands: Mapping[str, Callable[..., Any]] | None = None,
) -> typer.Typer:
    """A CLI of these command groups and commands whose context holds `settings`."""
    cli = typer.Typer()

    @cli.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = settings

    for name, group in groups.items():
        cli.add_typer(group, name=name)
    for name, command in (commands or {}).items():
        cli.command(name)(command)
    return cli
