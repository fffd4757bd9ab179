"""The error hierarchy every layer raises from.

Category classes carry the HTTP status and CLI exit code that the edges (API, CLI) map them to
in one place; leaf classes only build a message that names the object and what to do.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "Conflict",
    "DependencyMissing",
    "Forbidden",
    "InvalidInput",
    "LoopstackError",
    "NotFound",
    "PortInUse",
    "StalePidFile",
    "Unauthorized",
    "Unavailable",
    "is_transient",
]


class LoopstackError(Exception):
    """Root of every error Loopstack raises on purpose."""

    http_status: int = 500
    exit_code: int = 1
    retryable: bool = False
    """Whether trying again unchanged can succeed (a component not up yet, a lost connection).
    False for what only a fix can cure (bad input, a missing file, an empty window): a retry
    policy retries only errors that set this, so they fail at once with their message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(LoopstackError):
    """The caller sent something malformed: fix the request and send it again."""

    http_status = 400
    exit_code = 2


class NotFound(LoopstackError):
    """The named object does not exist: check its name (e.g. `loopstack models list`)."""

    http_status = 404
    exit_code = 3


class Conflict(LoopstackError):
    """The request clashes with the current state: read the state again and retry."""

    http_status = 409
    exit_code = 4


class Unavailable(LoopstackError):
    """A component is not running or not ready yet: start it (`loopstack up`) or retry later."""

    http_status = 503
    exit_code = 5
    retryable = True


class Unauthorized(LoopstackError):
    """Credentials are missing or invalid: pass a valid token (`LOOPSTACK_API__TOKEN`)."""

    http_status = 401
    exit_code = 6


class Forbidden(LoopstackError):
    """The credentials lack a role the action needs: ask an admin for that role."""

    http_status = 403
    exit_code = 6


class ConfigurationError(LoopstackError):
    """The configuration or the machine is not as Loopstack needs it: the message names the fix."""

    http_status = 500
    exit_code = 2


class DependencyMissing(ConfigurationError):
    """A program or package is not installed: run `make install` (or the command named)."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what} is not installed: {fix}")


class PortInUse(ConfigurationError):
    """A port Loopstack needs is taken by another process."""

    def __init__(self, component: str, host: str, port: int, setting: str) -> None:
        super().__init__(
            f"{component}: port {port} on {host} is in use by another process; "
            f"stop that process or set {setting} to a free port"
        )


class StalePidFile(ConfigurationError):
    """A pid file names a process that is gone: `loopstack down` cleans it up."""

    def __init__(self, component: str, path: str, pid: int) -> None:
        super().__init__(
            f"{component}: stale pid file {path} (pid {pid} is not running); "
            "run `loopstack down` to clean up, then `loopstack up`"
        )


class ComponentNotReady(Unavailable):
    """A component runs but cannot serve yet (e.g. the inference server loading a deployed
    version): the message names what it waits for; fix that, or wait longer."""

    def __init__(self, component: str, waited_s: float, reason: str, fix: str) -> None:
        super().__init__(
            f"{component} did not become ready within {waited_s:.0f}s: {reason}; {fix}"
        )


# Programming and data errors: the same code on the same data raises them again.
_DETERMINISTIC: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    NameError,
    ImportError,
    SyntaxError,
    ArithmeticError,
    AssertionError,
    NotImplementedError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether a retry can cure `exc`, judged by its type.

    A `LoopstackError` says so itself (`retryable`); of other exceptions, programming and data
    errors (TypeError, ValueError, KeyError, ImportError, ...) are deterministic, and the rest
    (OSError, connection and timeout errors, a library's runtime error) may pass.
    """
    if isinstance(exc, LoopstackError):
        return exc.retryable
    return not isinstance(exc, _DETERMINISTIC)
