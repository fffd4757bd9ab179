"""The review margin of a multiclass answer is the gap between its two likeliest classes."""

from __future__ import annotations

import pytest
from loopstack.core.modelspec import ReviewSpec
from loopstack.serving.loader import Scores
from loopstack.serving.review import review_flags


def test_margin_is_the_gap_between_the_top_two_of_five_classes() -> None:
    scores = Scores(
        predictions=["sun", "rain"],
        probabilities=[[0.40, 0.35, 0.15, 0.05, 0.05], [0.10, 0.70, 0.10, 0.05, 0.05]],
    )
    flags = review_flags(ReviewSpec(min_margin=0.2), scores)
    assert flags is not None
    assert flags.margins == pytest.approx([0.05, 0.60])
    assert flags.needs_review == [True, False]
    assert flags.event_field(0)["reasons"] == ["low_margin"]
