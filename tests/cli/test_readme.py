"""The README is the user's manual: every CLI command is in it."""

from __future__ import annotations

from pathlib import Path

import typer
from loopstack.cli.main import app
from typer.main import get_command

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _command_paths(group: object, prefix: str) -> list[str]:
    commands = getattr(group, "commands", None)
    if not commands:
        return [prefix]
    return [p for name, sub in commands.items() for p in _command_paths(sub, f"{prefix} {name}")]


def test_every_cli_command_is_documented_in_the_readme() -> None:
    paths = _command_paths(get_command(app), "loopstack")
    assert "loopstack up" in paths
    missing = [p for p in paths if f"`{p}" not in README]
    assert not missing, f"commands missing from README.md: {missing}"


def test_typer_app_is_the_console_script() -> None:
    assert isinstance(app, typer.Typer)
