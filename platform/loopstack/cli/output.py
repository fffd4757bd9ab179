"""How the CLI prints: one rich console, errors as one line naming the fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from loopstack.core.errors import LoopstackError

__all__ = ["console", "err_console", "fail_on_errors"]

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def fail_on_errors() -> Iterator[None]:
    """Turn Loopstack and configuration errors into a one-line message and an exit code."""
    try:
        yield
    except LoopstackError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        err_console.print(
            f"[bold red]error:[/] invalid configuration ({reasons}); fix loopstack.yaml or the "
            "LOOPSTACK_* environment variables",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
