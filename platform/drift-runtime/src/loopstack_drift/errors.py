"""Errors the drift runtime raises on purpose; the HTTP edge maps each to its status once."""

from __future__ import annotations

__all__ = ["DetectorNotFound", "DriftRuntimeError", "InvalidRequest", "RequestTooLarge"]


class DriftRuntimeError(Exception):
    """Root of every error the drift runtime raises on purpose."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidRequest(DriftRuntimeError):
    """The caller sent something malformed: the message names the field; fix it and resend."""

    status = 400


class RequestTooLarge(InvalidRequest):
    """The request is over one of the server's limits (the message names it): send a smaller
    sample, or start the server with a higher `--max-...` flag."""

    status = 413


class DetectorNotFound(DriftRuntimeError):
    """No detector has this key: fit it (`POST .../fit`) or load its bundle (`PUT .../bundle`)."""

    status = 404

    def __init__(self, key: str) -> None:
        super().__init__(
            f"detector {key!r} not found: fit it (POST /v1/detectors/{key}/fit) "
            f"or load its bundle (PUT /v1/detectors/{key}/bundle)"
        )
