"""The JSON Schemas of event data, shipped as package data and compiled once per type."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from loopstack.core.events.errors import SchemaViolation, UnknownEventType

__all__ = [
    "TYPE_PREFIX",
    "dataschema_uri",
    "full_type",
    "known_types",
    "load_schema",
    "split_conditionals",
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


@dataclass(frozen=True, slots=True)
class _Conditional:
    """`{"if": {"properties": {p: {"const"|"enum": strings}}}, "then": {"required": [...]}}`."""

    when: tuple[tuple[str, frozenset[str]], ...]
    required: tuple[str, ...]

    def check(self, data: dict[str, Any]) -> None:
        """Raise like fastjsonschema when the condition holds and a required key is missing."""
        for prop, allowed in self.when:
            if prop in data:
                value = data[prop]
                if not isinstance(value, str) or value not in allowed:
                    return
        missing = [key for key in self.required if key not in data]
        if missing:
            raise fastjsonschema.JsonSchemaValueException(
                f"data must contain {sorted(missing)} properties",
                value=data,
                name="data",
                definition={"required": list(self.required)},
                rule="required",
            )


def _conditional(item: Any) -> _Conditional | None:
    """The item as a `_Conditional`, or None if it has any other shape."""
    if not isinstance(item, dict) or set(item) != {"if", "then"}:
        return None
    cond, then = item["if"], item["then"]
    if not isinstance(cond, dict) or set(cond) != {"properties"}:
        return None
    if not isinstance(then, dict) or set(then) != {"required"}:
        return None
    if not isinstance(cond["properties"], dict) or not isinstance(then["required"], list):
        return None
    when = []
    for prop, sub in cond["properties"].items():
        if not isinstance(sub, dict) or len(sub) != 1:
            return None
        values = [sub["const"]] if "const" in sub else sub.get("enum")
        if not isinstance(values, list) or not values:
            return None
        if not all(isinstance(v, str) for v in values):
            return None
        when.append((str(prop), frozenset(values)))
    required = then["required"]
    if not when or not all(isinstance(k, str) for k in required):
        return None
    return _Conditional(tuple(when), tuple(required))


def split_conditionals(schema: dict[str, Any]) -> tuple[dict[str, Any], tuple[_Conditional, ...]]:
    """Take the simple top-level `allOf` if/then items out of a schema.

    fastjsonschema runs an `if` by raising and catching an exception, which for these
    "status is ok -> outputs is required" rules costs as much as the rest of the schema. They
    are checked in plain Python instead; items of any other shape stay in the schema.
    """
    items = schema.get("allOf")
    if not isinstance(items, list):
        return schema, ()
    found = [(_conditional(item), item) for item in items]
    rest = [item for cond, item in found if cond is None]
    out = {k: v for k, v in schema.items() if k != "allOf"}
    if rest:
        out["allOf"] = rest
    return out, tuple(cond for cond, _ in found if cond is not None)


@cache
def validator(name: str) -> Callable[[Any], Any]:
    """The compiled validator of a type: compiling costs milliseconds, so it happens once."""
    schema, conditionals = split_conditionals(load_schema(name))
    compiled: Callable[[Any], Any] = fastjsonschema.compile(schema)
    if not conditionals:
        return compiled

    def validate(data: Any) -> Any:
        result = compiled(data)  # checks that data is an object first
        for conditional in conditionals:
            conditional.check(data)
        return result

    return validate


def validate_data(name: str, data: Any) -> None:
    """Raise SchemaViolation unless `data` matches the schema of type `name`."""
    try:
        validator(name)(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise SchemaViolation(full_type(name), exc.message) from None
