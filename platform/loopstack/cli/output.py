"""How the CLI prints: one rich console, errors as one line naming the fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from loopstack.core.errors import LoopstackError

__all__ = ["console", "err_console", "fail_on_errors", "readable"]

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _told(text: str) -> str:
    # Lines that are only a traceback's `^^^^`/`~~~~` markers say nothing on their own.
    return "\n".join(line for line in text.splitlines() if set(line) - set("^~ \t")).strip()


def readable(exc: BaseException) -> str:
    """What went wrong, in words: the error's message, else its cause's (never a bare marker)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = _told(current.message if isinstance(current, LoopstackError) else str(current))
        if text:
            return text if current is exc else f"{type(current).__name__}: {text}"
        current = current.__cause__ or current.__context__
    return type(exc).__name__


@contextmanager
def fail_on_errors() -> Iterator[None]:
    """Turn Loopstack and configuration errors into a one-line message and an exit code."""
    try:
        yield
    except LoopstackError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(readable(exc))}", highlight=False, soft_wrap=True
        )
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
