"""The controller's statistics on synthetic paired streams, over many seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from loopstack.core.modelspec import RolloutSpec
from loopstack.loop.stats import losses, paired_evidence, required_samples, verdict

SEEDS = 2000
DEFAULTS = RolloutSpec()


def _promotion_rate(effect: float, alpha: float, power: float, effect_size: float) -> float:
    """Share of seeds the whole shadow phase ends in a promotion (looks at every pair count)."""
    horizon = required_samples(alpha, power, effect_size)
    promoted = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        champion = rng.normal(10.0, 3.0, horizon)
        difference = rng.normal(effect, 1.0, horizon)  # sd(d) = 1: the mean is the effect
        challenger = champion - difference
        # Looks come as pairs arrive; an early rollback ends the phase (as the controller does).
        for n in (20, 50, 100, horizon):
            decision = verdict(champion[:n], challenger[:n], alpha, power, effect_size)
            if decision.action != "wait":
                break
        promoted += decision.action == "promote"
    return promoted / SEEDS


@pytest.mark.parametrize(("alpha", "power", "effect_size"), [
    (DEFAULTS.alpha, DEFAULTS.power, DEFAULTS.effect_size),
    (0.01, 0.9, 0.3),
])  # fmt: skip
def test_no_effect_promotes_at_most_alpha(alpha: float, power: float, effect_size: float) -> None:
    rate = _promotion_rate(0.0, alpha, power, effect_size)
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / SEEDS)


@pytest.mark.parametrize(("alpha", "power", "effect_size"), [
    (DEFAULTS.alpha, DEFAULTS.power, DEFAULTS.effect_size),
    (0.01, 0.9, 0.3),
])  # fmt: skip
def test_configured_effect_promotes_with_the_configured_power(
    alpha: float, power: float, effect_size: float
) -> None:
    rate = _promotion_rate(effect_size, alpha, power, effect_size)
    assert rate >= power - 3 * math.sqrt(power * (1 - power) / SEEDS)


def test_a_worse_challenger_is_rolled_back_before_the_horizon() -> None:
    rng = np.random.default_rng(1)
    champion = rng.normal(10, 3, 60)
    decision = verdict(champion, champion + rng.normal(1.0, 1.0, 60), 0.05, 0.8, 0.2)
    assert decision.action == "rollback"
    assert decision.evidence.n == 60 < decision.horizon
    assert "worse" in decision.reason


def test_the_horizon_grows_with_smaller_effects_and_stricter_levels() -> None:
    assert required_samples(0.05, 0.8, 0.2) < required_samples(0.05, 0.8, 0.1)
    assert required_samples(0.05, 0.8, 0.2) < required_samples(0.01, 0.8, 0.2)
    assert required_samples(0.05, 0.8, 0.2) < required_samples(0.05, 0.9, 0.2)
    with pytest.raises(ValueError, match="alpha"):
        required_samples(1.5, 0.8, 0.2)


def test_garbage_predictions_are_the_worst_loss_not_missing() -> None:
    loss = losses("regression", [1.0, float("nan"), float("inf")], [2.0, 2.0, 2.0])
    assert np.isfinite(loss).all() and loss[1] == loss[2] > loss[0]
    evidence = paired_evidence(np.zeros(3), loss)
    assert evidence.mean_difference < 0 and evidence.as_dict()["n"] == 3


def test_class_losses_are_brier_for_two_classes_and_log_loss_for_more() -> None:
    from loopstack.loop.stats import class_losses

    binary = [{"0": 0.3, "1": 0.7}, {"0": 0.9, "1": 0.1}, None]
    assert class_losses(binary, ["1", "1", "0"]).tolist() == pytest.approx(
        [*losses("classification", [0.7, 0.1], [1, 1]), 1.0]  # a failed answer: the worst
    )
    three = [{"sun": 0.7, "rain": 0.2, "fog": 0.1}, {"sun": 0.5, "rain": 0.5, "fog": 0.0}]
    got = class_losses([*three, None], ["rain", "fog", "sun"])
    assert got[0] == pytest.approx(-math.log(0.2))
    assert got[1] == got[2] == pytest.approx(-math.log(1e-12))  # clipped, not infinite
