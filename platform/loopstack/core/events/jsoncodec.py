"""JSON bytes in and out: orjson when installed (several times faster), the stdlib otherwise."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["FAST", "dumps", "loads"]

try:
    import orjson

    FAST = True

    def dumps(obj: Any) -> bytes:
        """Serialize to compact UTF-8 JSON bytes."""
        return orjson.dumps(obj)

    def loads(raw: bytes | str) -> Any:
        """Parse JSON bytes or text; raise ValueError if malformed."""
        return orjson.loads(raw)

except ImportError:  # pragma: no cover - orjson ships with the main environment today
    FAST = False

    def dumps(obj: Any) -> bytes:
        """Serialize to compact UTF-8 JSON bytes."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(raw: bytes | str) -> Any:
        """Parse JSON bytes or text; raise ValueError if malformed."""
        return json.loads(raw)
