"""Errors of pipeline definitions and runs."""

from __future__ import annotations

from loopstack.core.errors import (
    ConfigurationError,
    InvalidInput,
    LoopstackError,
    NotFound,
    Unavailable,
)

__all__ = [
    "PERMANENT_FAILURE_EXIT",
    "PipelineDefinitionError",
    "PipelineNotFound",
    "InvalidPipelineParams",
    "StepFailed",
    "DataValidationFailed",
    "TrackingUnavailable",
]


PERMANENT_FAILURE_EXIT = 3
"""Exit code of a step whose error a retry cannot cure (`core.errors.is_transient` is False):
the embedded runner and Argo's retry strategy do not run it again."""


class PipelineDefinitionError(ConfigurationError):
    """A pipeline definition is inconsistent: fix the file under `pipelines/`."""


class PipelineNotFound(NotFound):
    """No such pipeline under `pipelines/`."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no pipeline {name!r}; known pipelines: {', '.join(known) or 'none'}")


class InvalidPipelineParams(InvalidInput):
    """Parameters are missing, unknown or malformed."""


class StepFailed(LoopstackError):
    """A step kept failing after its retries: read its log (path in the message)."""

    exit_code = 7

    def __init__(
        self,
        pipeline: str,
        step: str,
        attempts: int,
        log: str,
        reason: str,
        permanent: bool = False,
    ) -> None:
        tried = (
            "failed (not retried: fix the cause and run it again)"
            if permanent
            else f"failed after {attempts} attempt(s)"
        )
        super().__init__(
            f"pipeline {pipeline!r}: step {step!r} {tried}: {reason} (full log: {log})"
        )
        self.reason = reason
        self.permanent = permanent


class DataValidationFailed(InvalidInput):
    """Training data failed validation: fix the data or the window."""


class TrackingUnavailable(Unavailable):
    """MLflow did not answer a tracking call: check that it runs (`loopstack status`)."""

    def __init__(self, uri: str, detail: str) -> None:
        super().__init__(
            f"MLflow at {uri} is not answering: {detail}; start it with `loopstack up` "
            "(`loopstack status` shows whether it runs), or set LOOPSTACK_MLFLOW__TRACKING_URI"
        )
