"""Detector bundles: a detector directory packed as one tar.gz the caller stores (MLflow)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from loopstack_drift.errors import InvalidRequest, RequestTooLarge

__all__ = ["pack", "unpack"]


def pack(directory: Path) -> bytes:
    """A tar.gz of every file under `directory`, with paths relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()


def unpack(data: bytes, directory: Path, max_bytes: int | None = None) -> None:
    """Extract a bundle into `directory`; refuse anything but plain files inside it, and more
    than `max_bytes` unpacked (a small gzip can expand to gigabytes)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            unpacked = sum(member.size for member in archive.getmembers())
            if max_bytes is not None and unpacked > max_bytes:
                raise RequestTooLarge(
                    f"bundle unpacks to {unpacked} bytes; this server accepts at most "
                    f"{max_bytes} (8 x --max-body-bytes)"
                )
            # The "data" filter rejects absolute paths, `..`, links and device files.
            archive.extractall(directory, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidRequest(f"bundle is not a valid detector bundle (tar.gz): {exc}") from exc
