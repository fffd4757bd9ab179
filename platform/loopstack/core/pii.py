"""PII masking: the fields a model's spec marks sensitive never reach a store in clear.

Every writer that keeps what a caller sent (prediction events, failure events, the KServe
logger ingest, dead letters) masks those fields first, by name and at any depth: a JSON member
(`{"income": 1}`), a v2 tensor (`{"name": "income", "data": [1]}`), also inside text that is
not valid JSON (a request body that failed to parse), and any raw value echoed in an error.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterable
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["MASK", "SensitiveFields", "mask_text", "mask_values", "scrub"]

MASK = "***"

_STRING = r'"(?:[^"\\]|\\.)*"'
_VALUE = rf"(?:{_STRING}|\[[^\]]*\]|[^,}}\]\s]+)"


class SensitiveFields:
    """The sensitive fields of each model, from `models/<name>/model.yaml` (read once each)."""

    def __init__(self, models_dir: Path | None) -> None:
        self._dir = models_dir
        self._lock = threading.Lock()
        self._known: dict[str, frozenset[str]] = {}

    def of(self, model: str | None) -> frozenset[str]:
        """The model's sensitive fields (none for a model without a spec)."""
        if not model or self._dir is None:
            return frozenset()
        known = self._known.get(model)  # the per-request path: no lock once read
        if known is not None:
            return known
        with self._lock:
            if model not in self._known:
                from loopstack.core.modelspec import load_model_spec

                try:
                    fields = frozenset(load_model_spec(self._dir, model).sensitive_fields)
                except Exception:
                    fields = self._declared_in_broken_spec(model)
                self._known[model] = fields
            return self._known[model]

    def _declared_in_broken_spec(self, model: str) -> frozenset[str]:
        """Fields a spec that failed validation still names sensitive: a broken spec (one
        failure domain per model) must not turn masking off for the traffic that model gets."""
        import yaml

        assert self._dir is not None
        try:
            raw = yaml.safe_load((self._dir / model / "model.yaml").read_text()) or {}
            declared = raw.get("sensitive_fields") if isinstance(raw, dict) else None
        except (OSError, yaml.YAMLError):
            return frozenset()  # no spec at all, or unreadable: nothing is declared
        if not isinstance(declared, list):
            return frozenset()
        return frozenset(str(field) for field in declared)


def mask_values(value: Any, fields: Collection[str]) -> Any:
    """`value` with every member or v2 tensor named in `fields` masked, at any depth."""
    if not fields:
        return value
    if isinstance(value, dict):
        if value.get("name") in fields and "data" in value:
            return {**value, "data": MASK}
        return {k: MASK if k in fields else mask_values(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_values(v, fields) for v in value]
    return value


@cache
def _patterns(fields: frozenset[str]) -> tuple[re.Pattern[str], ...]:
    names = "|".join(re.escape(f) for f in sorted(fields))
    member = re.compile(rf'("(?:{names})"\s*:\s*){_VALUE}')
    tensor_after = re.compile(rf'("name"\s*:\s*"(?:{names})"[^{{}}]*?"data"\s*:\s*){_VALUE}')
    tensor_before = re.compile(rf'("data"\s*:\s*){_VALUE}([^{{}}]*?"name"\s*:\s*"(?:{names})")')
    return member, tensor_after, tensor_before


def mask_text(text: str, fields: Collection[str]) -> str:
    """JSON text (valid or not) with the values of `fields` masked."""
    if not fields:
        return text
    member, tensor_after, tensor_before = _patterns(frozenset(fields))
    text = member.sub(rf'\1"{MASK}"', text)
    text = tensor_after.sub(rf'\1"{MASK}"', text)
    return tensor_before.sub(rf'\1"{MASK}"\2', text)


def scrub(message: str, values: Iterable[Any]) -> str:
    """An error message with every raw sensitive value it echoes masked."""
    for value in values:
        if isinstance(value, bool) or value is None:
            continue
        for text in dict.fromkeys((str(value), repr(value))):
            if len(text) >= 3:  # masking "1" or "No" would garble the message, not protect it
                message = message.replace(text, MASK)
    return message
