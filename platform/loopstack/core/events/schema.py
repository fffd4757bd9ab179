"""The JSON Schemas of event data, shipped as package data and compiled once per type."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

from loopstack.core.events.errors import SchemaViolation, UnknownEventType

__all__ = [
    "TYPE_PREFIX",
    "dataschema_uri",
    "full_type",
    "known_types",
    "load_schema",
    "type_name",
    "validate_data",
    "validator",
]

TYPE_PREFIX = "io.loopstack."
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[1-9][0-9]*$")


def full_type(name: str) -> str:
    """`prediction.v1` -> `io.loopstack.prediction.v1` (full names pass through)."""
    return name if name.startswith(TYPE_PREFIX) else TYPE_PREFIX + name


def type_name(event_type: str) -> str:
    """`io.loopstack.prediction.v1` -> `prediction.v1`; raise UnknownEventType otherwise."""
    name = _short_names().get(event_type)
    if name is None:
        raise UnknownEventType(event_type, [full_type(n) for n in known_types()])
    return name


@cache
def _short_names() -> dict[str, str]:
    """Full type -> short name of every shipped type (one dict lookup per event, no regex)."""
    return {full_type(n): n for n in known_types() if _NAME.match(n)}


def dataschema_uri(name: str) -> str:
    """The `dataschema` attribute of events of this type (the schema's `$id`)."""
    return f"urn:loopstack:events:{name}"


@cache
def known_types() -> tuple[str, ...]:
    """Short names of every type with a shipped schema, e.g. `('audit.v1', ...)`."""
    folder = resources.files("loopstack.core.events") / "schemas"
    return tuple(
        sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))
    )


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (a dict) of a short type name."""
    if name not in known_types():
        raise UnknownEventType(full_type(name), [full_type(n) for n in known_types()])
    text = (resources.files("loopstack.core.events") / "schemas" / f"{name}.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> jsonschema_rs.Validator:
    """The compiled validator of a type (Rust: several times faster than generated Python)."""
    return jsonschema_rs.validator_for(load_schema(name), validate_formats=True)


def _where(path: Sequence[str | int]) -> str:
    """`["features", "values", 0]` -> `data.features.values[0]`."""
    return "data" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def validate_data(name: str, data: Any) -> None:
    """Raise SchemaViolation unless `data` matches the schema of type `name`."""
    try:
        validator(name).validate(data)
    except jsonschema_rs.ValidationError as exc:
        raise SchemaViolation(
            full_type(name), f"{_where(exc.instance_path)}: {exc.message}"
        ) from None
