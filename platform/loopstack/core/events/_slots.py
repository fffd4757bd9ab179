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
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    setters = tuple(cls.__dict__[f.name].__set__ for f in fields)
    count = len(setters)
    new = object.__new__

    def build(*values: Any) -> T:
        if len(values) != count:
            raise TypeError(f"{cls.__name__} takes {count} values, got {len(values)}")
        obj: T = new(cls)
        for set_, value in zip(setters, values, strict=False):
            set_(obj, value)
        return obj

    return build
