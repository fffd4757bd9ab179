"""What one inference request may hold (`serving.limits`), and what its events keep of it.

One set of checks for every protocol: the REST routes read at most `max_body_bytes` of a body
(`read_body`; gRPC's own receive limit is the same number), each decoder refuses rows, fields
and values over the limits before it builds anything from them, and the runtime checks the
decoded request once more whatever its protocol (`Limits.check`: v1, v2 REST, gRPC and
asynchronous requests alike). Each refusal names the limit and its setting.

Events keep bounded copies of what was sent (`cut_row`, `bounded_inputs`): a string longer than
`event_string_chars` is cut and marked `…[+N chars]` (a value of its own to any consumer: one
category), bytes become text, and a failed request's inputs keep at most `EVENT_ITEMS` fields and
values per field and `EVENT_INPUT_BYTES` in all. The answer itself always uses the full value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from loopstack.core.settings import InputLimits
from loopstack.serving.errors import BadRequest, BodyTooLarge

if TYPE_CHECKING:
    from starlette.requests import Request

    from loopstack.serving.schema import Matrix

__all__ = [
    "BodyLimit",
    "EVENT_INPUT_BYTES",
    "EVENT_ITEMS",
    "Limits",
    "bounded",
    "bounded_inputs",
    "cut",
    "cut_row",
    "human_bytes",
    "short",
]

EVENT_ITEMS = 100
"""Fields, and values per field, a failed request's event keeps (an answered one keeps its row)."""
EVENT_INPUT_BYTES = 32 * 1024
"""Size of a failed request's logged inputs beyond which only a note of their size is kept."""
MESSAGE_CHARS = 1_000
"""Characters of an error message answered and logged (gRPC status details must stay small)."""
_SETTING = "serving.limits"
_DEPTH = 8
"""Levels of nesting a logged value keeps (a v2 body is 5 deep)."""
_KEY_CHARS = 128
"""Characters of a field name kept (at least): names are structure (`instances`, `inputs`)."""


def human_bytes(size: int) -> str:
    """`8 MiB` for a round binary size (how limits are set), else `10.5 MB`."""
    for unit, step in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= step and size % step == 0:
            return f"{size // step} {unit}"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def cut(text: str, chars: int) -> str:
    """The text, or its first `chars` characters marked with how many were left out."""
    if len(text) <= chars:
        return text
    return f"{text[:chars]}…[+{len(text) - chars} chars]"


def short(message: str) -> str:
    """An error message cut to `MESSAGE_CHARS` (it may quote what the caller sent)."""
    return cut(message, MESSAGE_CHARS)


def _text(value: bytes | bytearray | memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def cut_row(row: dict[str, Any], chars: int) -> dict[str, Any]:
    """An answered row as logged: checked values (numbers, booleans, text), long text cut."""
    for name, value in row.items():
        if isinstance(value, str) and len(value) > chars:
            row[name] = cut(value, chars)
    return row


def bounded(value: Any, chars: int, depth: int = 0) -> Any:
    """A JSON-ready copy: text cut, bytes as text, at most `EVENT_ITEMS` entries per container
    and `_DEPTH` levels of nesting, integers beyond 64 bits as text."""
    if isinstance(value, str):
        return cut(value, chars)
    if isinstance(value, bytes | bytearray | memoryview):
        return cut(_text(value), chars)
    if isinstance(value, bool | float) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else cut(str(value), chars)
    if isinstance(value, np.generic):
        return bounded(value.item(), chars, depth)
    if isinstance(value, Mapping | list | tuple | np.ndarray) and depth >= _DEPTH:
        return "…[nested]"
    if isinstance(value, Mapping):
        key_chars = max(chars, _KEY_CHARS)
        out = {
            cut(str(k), key_chars): bounded(v, chars, depth + 1) for k, v in _first(value.items())
        }
        if len(value) > EVENT_ITEMS:
            out["…"] = f"+{len(value) - EVENT_ITEMS} fields"
        return out
    if isinstance(value, np.ndarray):
        size, head = value.size, value.reshape(-1)[:EVENT_ITEMS].tolist()
    elif isinstance(value, list | tuple):
        size, head = len(value), list(value[:EVENT_ITEMS])
    else:
        return cut(str(value), chars)  # nothing else comes out of JSON or protobuf
    items = [bounded(v, chars, depth + 1) for v in head]
    if size > EVENT_ITEMS:
        items.append(f"…[+{size - EVENT_ITEMS} values]")
    return items


def _first(items: Any) -> Any:
    for i, item in enumerate(items):
        if i == EVENT_ITEMS:
            return
        yield item


def bounded_inputs(inputs: Any, chars: int) -> Any:
    """What a failed (or ingested) request's event keeps of its inputs: `bounded`, and no more
    than `EVENT_INPUT_BYTES` in all (else a note of the size)."""
    kept = bounded(inputs, chars)
    size = len(orjson.dumps(kept, option=orjson.OPT_SERIALIZE_NUMPY))
    if size > EVENT_INPUT_BYTES:
        return {
            "_omitted": f"{human_bytes(size)} of inputs (over {human_bytes(EVENT_INPUT_BYTES)})"
        }
    return kept


class Limits:
    """`serving.limits`, checked: each method raises `BadRequest` (413 `BodyTooLarge` for the
    body) naming the limit and its setting."""

    def __init__(self, settings: InputLimits | None = None) -> None:
        self.settings = settings or InputLimits()
        self.max_body_bytes = self.settings.max_body_bytes
        self.event_string_chars = self.settings.event_string_chars

    def _refuse(self, what: str, limit: int, setting: str) -> BadRequest:
        return BadRequest(
            f"{what}; the limit is {limit} ({_SETTING}.{setting}): send fewer per request, or "
            "raise the limit"
        )

    def body(self, size: int | None) -> BodyTooLarge:
        """The refusal of a body of `size` bytes (None: a streamed body, size unknown)."""
        limit = human_bytes(self.max_body_bytes)
        said = f"is {human_bytes(size)}" if size is not None else f"exceeds {limit}"
        return BodyTooLarge(
            f"the request body {said}; the limit is {limit} ({_SETTING}.max_body_bytes): send "
            "fewer rows per request, or raise the limit"
        )

    async def read_body(self, request: Request) -> bytes:
        """The body, read only up to the limit (a declared larger one is not read at all).

        Raises:
            BodyTooLarge: the body is over `max_body_bytes`.
        """
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self.body(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self.body(None)
            chunks.append(chunk)
        return b"".join(chunks)

    def rows(self, rows: int) -> None:
        """Refuse more than `max_rows` rows."""
        if rows > self.settings.max_rows:
            raise self._refuse(f"the request has {rows} rows", self.settings.max_rows, "max_rows")

    def fields(self, fields: int) -> None:
        """Refuse more than `max_fields` fields (v1 keys, v2 tensors, matrix columns)."""
        if fields > self.settings.max_fields:
            raise self._refuse(
                f"the request has {fields} fields", self.settings.max_fields, "max_fields"
            )

    def elements(self, values: int) -> None:
        """Refuse more than `max_tensor_elements` values in all."""
        limit = self.settings.max_tensor_elements
        if values > limit:
            raise self._refuse(f"the request holds {values} values", limit, "max_tensor_elements")

    def text(self, name: str, row: int | None, value: Any) -> None:
        """Refuse a string (or BYTES element) longer than `max_string_chars`."""
        limit = self.settings.max_string_chars
        if isinstance(value, str | bytes) and len(value) > limit:
            where = f"field {cut(name, 64)!r}" + (f" row {row}" if row is not None else "")
            raise self._refuse(
                f"{where} is {len(value)} characters long", limit, "max_string_chars"
            )

    def check(
        self,
        columns: Mapping[str, list[Any]],
        rows: int,
        matrix: Matrix | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        """Every limit but the body's, on a decoded request (whatever its protocol)."""
        self.rows(rows)
        width, values = len(columns), sum(len(v) for v in columns.values())
        if matrix is not None:
            if isinstance(matrix.values, np.ndarray):
                width += matrix.values.shape[1] if matrix.values.ndim == 2 else 1
                values += matrix.values.size
            else:
                width += max((len(r) for r in matrix.values if isinstance(r, list)), default=0)
                values += sum(len(r) if isinstance(r, list) else 1 for r in matrix.values)
        self.fields(width)
        self.elements(values)
        limit = self.settings.max_string_chars
        for name, column in columns.items():
            if len(name) > limit:
                raise self._refuse(
                    f"a field name is {len(name)} characters long", limit, "max_string_chars"
                )
            self._texts(name, column)
        if matrix is not None and not isinstance(matrix.values, np.ndarray):
            for i, row in enumerate(matrix.values):
                if isinstance(row, list):
                    self._texts(f"{matrix.name}[{i}]", row)
        for name, value in (parameters or {}).items():
            self.text(f"parameter {name}", None, value)

    def _texts(self, name: str, values: Any) -> None:
        if isinstance(values, np.ndarray) and values.dtype.kind != "O":
            return  # numbers only
        limit = self.settings.max_string_chars
        for i, value in enumerate(values):
            if isinstance(value, str | bytes) and len(value) > limit:
                self.text(name, i, value)


class BodyLimit:
    """ASGI middleware: every other route's body (KServe's own: explain, repository...) is held
    to the same `max_body_bytes`, a 413 naming it. The inference and ingest routes (`exempt`)
    read their bodies through `Limits.read_body` themselves, to log the refusal as a prediction.
    """

    def __init__(self, app: Any, limits: Limits, exempt: Callable[[str], bool]) -> None:
        self.app = app
        self.limits = limits
        self.exempt = exempt

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.exempt(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            await _refuse(send, self.limits.body(int(declared)))
            return
        size, started = 0, False

        async def counted() -> Any:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > self.limits.max_body_bytes:
                raise self.limits.body(None)
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await _refuse(send, exc)


async def _refuse(send: Any, exc: BodyTooLarge) -> None:
    body = orjson.dumps({"error": exc.message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
