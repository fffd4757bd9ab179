"""Errors of the monitoring layer, each under a core category and saying what to do."""

from __future__ import annotations

from loopstack.core.errors import DependencyMissing, InvalidInput, NotFound, Unavailable

__all__ = [
    "DetectorNotFound",
    "DetectorRequestFailed",
    "DetectorRequestInvalid",
    "DetectorServerUnavailable",
    "DriftRuntimeInstallFailed",
    "DriftRuntimeMissing",
]


class DetectorNotFound(NotFound):
    """The detector server has no detectors under this key: fit them or load their bundle."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"drift detector {key!r} not found on the detector server: fit it "
            "(`DetectorClient.fit`) or load its bundle from the model's MLflow artifacts "
            "(`DetectorClient.load`)"
        )


class DetectorRequestInvalid(InvalidInput):
    """The detector server refused the data sent (missing or extra column, wrong type, ...)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"drift detector {key!r} refused the request: {reason}")


class DetectorServerUnavailable(Unavailable):
    """The detector server is not reachable or failed: start it (`loopstack up`) or check its log."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"drift detector server at {url} is unavailable ({reason}); start it "
            "(`loopstack up`, after `loopstack drift-runtime install` or, in a checkout, "
            "`make drift-env`) or see its log"
        )


class DetectorRequestFailed(DetectorServerUnavailable):
    """The request reached the detector server and failed there (an error answer, the connection
    lost mid-request, a timeout): unlike a server that cannot be reached, the same request may
    fail again, so callers count the attempts (see the server's log for the cause)."""


class DriftRuntimeMissing(DependencyMissing):
    """The drift runtime's own environment (alibi-detect) is not installed: install it with
    `loopstack drift-runtime install` (in a checkout, `make drift-env`)."""

    def __init__(self, python: str, configured: bool = False) -> None:
        self.path = python
        fix = (
            "set LOOPSTACK_DRIFT__PYTHON to an existing drift runtime's python, or unset it and "
            "run `loopstack drift-runtime install`"
            if configured
            else "run `loopstack drift-runtime install` (in a checkout: `make drift-env`)"
        )
        super().__init__(f"the drift runtime ({python})", fix)


class DriftRuntimeInstallFailed(DependencyMissing):
    """Setting up the drift runtime failed: the message names the command and its output's
    end; fix the cause (network, disk, Python 3.11) and run `loopstack drift-runtime install`."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(
            "the drift runtime",
            f"installing it failed ({command}: {reason}); fix that and run "
            "`loopstack drift-runtime install --force`",
        )
