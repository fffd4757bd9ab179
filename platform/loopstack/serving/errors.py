"""Errors of the serving layer, each under a core category and saying what to do."""

from __future__ import annotations

from loopstack.core.errors import (
    ConfigurationError,
    Conflict,
    InvalidInput,
    LoopstackError,
    NotFound,
    Unavailable,
)

__all__ = [
    "AnswerNotDurable",
    "BadRequest",
    "BodyTooLarge",
    "ExplanationFailed",
    "ExplanationUnavailable",
    "ModelNotReady",
    "ModelNotServed",
    "RolloutInProgress",
    "UnsupportedModel",
    "VersionNotServed",
]


class BadRequest(InvalidInput):
    """The inference request is malformed (shape, dtype, missing or extra fields): fix and resend."""


class BodyTooLarge(BadRequest):
    """The request body (or gRPC message) is over `serving.limits.max_body_bytes`: send fewer
    rows per request, or raise the limit."""

    http_status = 413


class ModelNotServed(NotFound):
    """No traffic split names this model on this server: deploy it with `loopstack deploy`."""

    def __init__(self, model: str, served: list[str]) -> None:
        super().__init__(
            f"model {model!r} is not served here (served: {', '.join(sorted(served)) or 'none'}); "
            "deploy it with `loopstack deploy MODEL --version V`"
        )


class VersionNotServed(NotFound):
    """A request pinned a version that the model's traffic split does not include."""

    def __init__(self, model: str, version: str, served: list[str]) -> None:
        super().__init__(
            f"model {model!r} version {version!r} is not served (served: {', '.join(served)}); "
            "omit the version to follow the traffic split"
        )


class RolloutInProgress(Conflict):
    """A challenger is in shadow or canary: wait for its rollout to end, or end it with force."""

    def __init__(self, model: str, champion: str, challenger: str, mode: str, action: str) -> None:
        self.model, self.challenger, self.mode = model, challenger, mode
        super().__init__(
            f"cannot {action}: model {model!r} has a rollout in flight (challenger v{challenger} "
            f"in {mode} against champion v{champion}); wait for it to end "
            f'(`loopstack history {model}`), or end it with --force (API: "force": true)'
        )


class ModelNotReady(Unavailable):
    """The model's versions are still loading (or failed to load): retry after `retry_after_s`."""

    retry_after_s = 1

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(f"model {model!r} is not ready: {detail}")


class UnsupportedModel(ConfigurationError):
    """A registered version cannot be served: log it with the sklearn flavor and a signature."""


class ExplanationUnavailable(Conflict):
    """A version has no background sample to explain against: register it with the train
    pipeline (it logs `reference/reference.parquet`) or log an input example with the model."""

    def __init__(self, model: str, version: str, detail: str) -> None:
        super().__init__(
            f"model {model!r} v{version} cannot be explained: {detail}; register it with "
            "`loopstack pipeline run train` (which logs a reference sample) or log the model "
            "with an input example, or resend without explain"
        )


class ExplanationFailed(LoopstackError):
    """SHAP raised while explaining a valid request: a server fault; see the server log."""

    def __init__(self, model: str, version: str, exc: BaseException) -> None:
        super().__init__(
            f"explaining model {model!r} v{version} failed ({type(exc).__name__}: {exc}); "
            "the prediction itself works: resend without explain"
        )


class AnswerNotDurable(Unavailable):
    """The answer's prediction event could not be written to the process's event outbox, so the
    answer is withheld (`serving.durable_answers`): retry shortly; check the event log."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the answer is withheld: its prediction event could not be written to the event "
            f"outbox ({reason}); retry shortly, and check the event log (`loopstack status`). "
            "LOOPSTACK_SERVING__DURABLE_ANSWERS=false answers without waiting for the event"
        )
