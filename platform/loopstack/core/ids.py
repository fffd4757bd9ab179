"""Random (version 4) UUIDs drawn from a pooled `os.urandom` read.

`uuid.uuid4()` reads the OS's random source once per id, and that read releases the GIL. In a
process where a model thread is computing, the event loop then waits up to the interpreter's
switch interval (5 ms) to get the GIL back: three ids per request cost more than the request.
One read of 256 ids' worth of bytes releases it once for all of them; the bytes are the same
cryptographic randomness.
"""

from __future__ import annotations

import os
import threading
import uuid

__all__ = ["uuid4"]

_IDS_PER_READ = 256


class _RandomPool:
    """Random bytes read in bulk, handed out 16 at a time (thread-safe; reset in a fork child)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._next = 0

    def take16(self) -> bytes:
        with self._lock:
            start = self._next
            if start >= len(self._bytes):
                self._bytes, start = os.urandom(16 * _IDS_PER_READ), 0
            self._next = start + 16
            return self._bytes[start : start + 16]

    def forget(self) -> None:
        """After a fork: the child must not hand out the parent's remaining bytes again."""
        self._lock = threading.Lock()
        self._bytes, self._next = b"", 0


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.forget)


def uuid4() -> str:
    """A new random UUID string, as `str(uuid.uuid4())` gives."""
    return str(uuid.UUID(bytes=_pool.take16(), version=4))
