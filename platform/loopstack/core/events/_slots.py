"""Building frozen slots dataclasses on hot paths without their generated `__init__`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["builder"]

T = TypeVar("T")


def builder(cls: type[T]) -> Callable[..., T]:
    """A function that takes every field of `cls` in declaration order and returns an instance.

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`, which costs
    about twice as much as setting the slot directly. Events and records are built once per
    message, so the decoders use this instead. It runs no defaults and no `__post_init__`:
    every value must be given, already checked.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    # Straight-line code (one slot store per field, no loop) built from the field names alone.
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    scope.update({f"set_{n}": cls.__dict__[n].__set__ for n in names})
    body = "".join(f"    set_{n}(obj, {n})\n" for n in names)
    source = f"def build({', '.join(names)}):\n    obj = new(cls)\n{body}    return obj\n"
    exec(source, scope)
    build: Callable[..., T] = scope["build"]
    return build
