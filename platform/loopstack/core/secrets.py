"""Secrets stay out of output and logs: tokens and passwords inside URLs are shown as `***`.

Secrets come only from the environment (or a Kubernetes Secret mapped into it); what Loopstack
prints or logs about its configuration passes through here first.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HIDDEN", "redact_url", "redacted"]

HIDDEN = "***"
_SECRET_NAMES = re.compile(r"(^|_)(token|password|secret|api_key|credentials?)$", re.I)
_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@", re.I)


def redact_url(url: str) -> str:
    """The URL with the password of its user info hidden (`postgresql://loop:***@db/x`)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{HIDDEN}@", url)


def redacted(value: Any, name: str = "") -> Any:
    """A JSON-ready settings dump with secret fields and URL passwords hidden, at any depth."""
    if isinstance(value, dict):
        return {k: redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, name) for v in value]
    if isinstance(value, str):
        return HIDDEN if value and _SECRET_NAMES.search(name) else redact_url(value)
    return value
