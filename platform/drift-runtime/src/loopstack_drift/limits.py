"""What the detector server accepts, so one request cannot exhaust the host (PROTOCOL.md, Limits).

The server defends itself whatever its caller already bounded: the body is refused past
`max_body_bytes` before it is parsed, tables past `max_rows` / `max_columns`, long category
values are replaced by a short digest, and the distinct categories of a feature are capped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["OTHER", "Limits", "digest"]

OTHER = "<other>"
"""The category that rare reference categories and overflowing new ones are folded into."""

_DIGEST_PREFIX = "sha256:"
_DIGEST_HEX = 16


def digest(value: str) -> str:
    """`sha256:<16 hex>` of a long value's UTF-8: equal values keep one category, 23 chars."""
    return (
        _DIGEST_PREFIX
        + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_HEX]
    )


@dataclass(frozen=True)
class Limits:
    """Bounds on one request; the defaults keep a scored window's peak well under 1 GiB."""

    max_body_bytes: int = 32 * 1024 * 1024
    """Request body; larger is refused with 413 before it is read whole."""
    max_rows: int = 100_000
    """Rows of a reference or a window; more is 413."""
    max_columns: int = 512
    """Columns of a reference or a window; more is 413."""
    max_category_chars: int = 256
    """A longer categorical string is replaced by `digest(value)` (a 10 MB value no longer
    becomes a 40 MB-per-row fixed-width array)."""
    max_categories: int = 1_000
    """Distinct categories per feature: a reference with more keeps its most frequent
    `max_categories - 1` and folds the rest into `OTHER`; a window's unseen categories get a
    cell each up to this many, then share one."""

    max_concurrent: int = 2
    """Requests read and worked on at once (fit, score, bundle upload); the others wait unread,
    so peak memory is this many requests' worth, not one per client."""

    def category(self, value: str) -> str:
        """`value`, or its digest when it is longer than `max_category_chars`."""
        return value if len(value) <= self.max_category_chars else digest(value)
