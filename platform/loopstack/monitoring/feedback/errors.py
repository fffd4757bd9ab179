"""Errors of feedback and live quality, each under a core category and saying what to do."""

from __future__ import annotations

from loopstack.core.errors import InvalidInput, NotFound, Unavailable

__all__ = [
    "FeedbackRejected",
    "FeatureSourceMissing",
    "OrphanOutcome",
    "PoisonOutcome",
    "PredictionNotFound",
    "ReadModelRebuilding",
    "ReadModelUnavailable",
    "ReviewNotFound",
]


class PredictionNotFound(NotFound):
    """The read model holds no prediction with this id (yet): check the id, or wait for the
    feedback consumer to catch up (`loopstack events tail predictions`)."""

    def __init__(self, prediction_id: str) -> None:
        super().__init__(
            f"prediction {prediction_id!r} is not in the feedback read model; check the id, or "
            "wait for the feedback consumer to catch up (is it running? `loopstack status`)"
        )


class ReviewNotFound(NotFound):
    """The prediction is not in the review queue: only flagged predictions take a decision."""

    def __init__(self, prediction_id: str) -> None:
        super().__init__(
            f"prediction {prediction_id!r} is not in the review queue; list it with "
            "`loopstack reviews`, or send a plain human outcome with `loopstack feedback send`"
        )


class FeedbackRejected(InvalidInput):
    """Every item of a feedback batch was invalid; the answer lists the reason of each."""

    def __init__(self, rejected: int, first_reason: str) -> None:
        super().__init__(
            f"all {rejected} feedback item(s) were rejected (first: {first_reason}); each item "
            "needs `outcome`, `observed_at` and either `prediction_id` or `entity_key` + "
            "`event_time`"
        )


class OrphanOutcome(InvalidInput):
    """An outcome found no prediction within its join window; it is dead-lettered with this
    message. Re-drive it (`loopstack events redrive outcomes`) once its prediction is in the log."""

    def __init__(self, key: str, waited_s: float) -> None:
        super().__init__(
            f"orphan: outcome for {key} matched no prediction within the join window "
            f"({waited_s:.0f}s); check that the prediction was logged, then re-drive it"
        )


class ReadModelUnavailable(Unavailable):
    """The read model database does not answer: check `feedback.read_model_url` and the server."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(
            f"the feedback read model ({url}) is unavailable: {detail}; check that the database "
            "runs and LOOPSTACK_FEEDBACK__READ_MODEL_URL points at it"
        )


class FeatureSourceMissing(NotFound):
    """`feedback.push_sources` names a push source the Feast registry lacks: run `feast apply`."""

    def __init__(self, model: str, source: str) -> None:
        super().__init__(
            f"model {model!r}: push source {source!r} is not in the Feast registry; apply the "
            "feature repository, or fix LOOPSTACK_FEEDBACK__PUSH_SOURCES"
        )


class PoisonOutcome(InvalidInput):
    """An outcome event in the log that cannot label its prediction (a value older than intake's
    checks, or published around them): the consumer dead-letters it with this message and goes
    on. Send a valid outcome for the prediction instead (`loopstack feedback send`)."""

    def __init__(self, event_id: str, value: str, why: str) -> None:
        super().__init__(
            f"outcome {event_id} ({value[:200]}) is dead-lettered: {why}; send a valid outcome "
            "for the prediction instead"
        )


class ReadModelRebuilding(Unavailable):
    """`feedback rebuild` is re-applying the log: quality reads would see a partial read model.
    Retry once it ends (the rebuild's answer says when)."""

    def __init__(self, started_at: str) -> None:
        super().__init__(
            f"the feedback read model is being rebuilt (since {started_at}); its quality windows "
            "are incomplete until the rebuild ends: retry in a moment (if no rebuild is running, "
            "run `loopstack feedback rebuild` again to finish it)"
        )
