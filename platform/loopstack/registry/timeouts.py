"""How long Loopstack's processes wait for MLflow, and how a failed call is told.

MLflow's client reads its HTTP timeout and retries from environment variables on every call;
its defaults (120 s, 7 retries with back-off) kept a management request waiting about 4 minutes
for an MLflow that was down, long after its caller had given up. Every process that calls MLflow
sets them from `MlflowSettings` at start.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from loopstack.core.settings import MlflowSettings
from loopstack.registry.errors import RegistryUnavailable

__all__ = [
    "mlflow_answers",
    "mlflow_client_env",
    "unanswered",
    "use_mlflow_timeouts",
    "warm_mlflow_client",
    "why_unanswered",
]


def mlflow_client_env(mlflow: MlflowSettings, *, background: bool = False) -> dict[str, str]:
    """MLflow's client variables for these settings (for a child process's environment);
    `background`: for work nobody waits on, which waits longer."""
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(
            mlflow.background_request_timeout_s if background else mlflow.request_timeout_s
        ),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(
            mlflow.background_request_max_retries if background else mlflow.request_max_retries
        ),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(mlflow.request_backoff_factor),
    }


def use_mlflow_timeouts(mlflow: MlflowSettings, *, background: bool = False) -> None:
    """Make this process's MLflow client calls give up after `mlflow.request_timeout_s` (or the
    background timeout)."""
    os.environ.update(mlflow_client_env(mlflow, background=background))


_WARM = threading.Lock()
_warm = False


def warm_mlflow_client() -> None:
    """Load what MLflow's client loads on its first call (every installed request-header plugin:
    Feast's alone takes 7 to 20 s), once per process; a second caller waits for the first.

    Called at API start and before a request's deadline starts, so a first call made while
    MLflow is down fails within the timeout, and local imports never eat a request's deadline.
    """
    global _warm
    with _WARM:
        if _warm:
            return
        from mlflow.tracking.request_header.registry import resolve_request_headers

        resolve_request_headers()
        _warm = True


def _no_answer(exc: BaseException) -> str | None:
    """Why a call got no answer at all (timed out, refused, dropped), or None if it got one."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain).lower()
    if "timed out" in text or "timeout" in text:
        waited = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
        return f"timed out after {waited} s"
    if "refused" in text:
        return "connection refused"
    if "max retries exceeded" in text or "connection aborted" in text:
        return "the connection failed"
    return None


def why_unanswered(exc: BaseException) -> str:
    """A failed MLflow call in a few words: timed out (after how long), refused, or its first line."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _no_answer(exc) or first[:300]


def unanswered(exc: BaseException) -> bool:
    """Whether a failed MLflow call got no answer, as opposed to MLflow answering an error."""
    from mlflow.exceptions import MlflowException, RestException

    if not isinstance(exc, MlflowException) or isinstance(exc, RestException):
        return False
    return _no_answer(exc) is not None


@contextmanager
def mlflow_answers(tracking_uri: str) -> Iterator[None]:
    """Turn an MLflow call that got no answer into `RegistryUnavailable` (503 naming MLflow)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if unanswered(exc):
            raise RegistryUnavailable(tracking_uri, why_unanswered(exc)) from exc
        raise
