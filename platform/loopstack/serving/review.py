"""Low-confidence answers: which rows of a classifier's answer a human should look at.

The margin of a row is its most likely class's probability minus the runner-up's; a row whose
margin is under the model's `review.min_margin` is flagged `needs_review` in the answer and its
`prediction.v1` event, and the feedback consumer queues it for review.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopstack.core.modelspec import ReviewSpec
from loopstack.serving.loader import Scores

__all__ = ["ReviewFlags", "review_flags"]


@dataclass(frozen=True)
class ReviewFlags:
    """Per row: the class-probability margin and whether it is under the model's minimum."""

    margins: list[float]
    needs_review: list[bool]
    min_margin: float

    def event_field(self, row: int) -> dict[str, object]:
        """The `review` field of the row's `prediction.v1` event."""
        field: dict[str, object] = {
            "needs_review": self.needs_review[row],
            "margin": round(self.margins[row], 6),
            "min_margin": self.min_margin,
        }
        if self.needs_review[row]:
            field["reasons"] = ["low_margin"]
        return field


def review_flags(spec: ReviewSpec | None, scores: Scores) -> ReviewFlags | None:
    """The rows to review, or None when the model asks for no confidence check."""
    if spec is None or spec.min_margin is None or scores.probabilities is None:
        return None
    margins = [_margin(row) for row in scores.probabilities]
    return ReviewFlags(margins, [m < spec.min_margin for m in margins], spec.min_margin)


def _margin(probabilities: list[float]) -> float:
    if len(probabilities) < 2:
        return 1.0
    top, second = sorted(probabilities, reverse=True)[:2]
    return float(top - second)
