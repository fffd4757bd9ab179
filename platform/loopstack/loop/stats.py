"""The rollout's statistics: a fixed-horizon, one-sided paired t-test on per-request losses.

Shadow traffic gives, for every labelled request, the champion's and the challenger's loss on
the same input: the differences `d = loss_champion - loss_challenger` are paired, so request-
to-request noise cancels. The challenger is promoted only when, at the planned horizon `n`
(enough pairs to detect `effect_size` = mean(d) / sd(d) with `power` at level `alpha`), the test
says it is better with p < alpha: looking once keeps the false-promotion rate at alpha. A
challenger that is significantly *worse* may be rolled back at any look before that: stopping
early in that direction can only cost a promotion, never add one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = [
    "PairedEvidence",
    "Verdict",
    "class_losses",
    "losses",
    "paired_evidence",
    "required_samples",
    "verdict",
]

MIN_EARLY_ROLLBACK_PAIRS = 20
"""Fewer pairs than this never roll back on statistics (guards still do)."""


@lru_cache(maxsize=256)
def required_samples(alpha: float, power: float, effect_size: float) -> int:
    """Smallest n at which a one-sided paired t-test at `alpha` has `power` for `effect_size`."""
    if not (0 < alpha < 1 and 0 < power < 1 and effect_size > 0):
        raise ValueError("alpha and power must be in (0, 1) and effect_size > 0")
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    n = max(3, math.ceil((z / effect_size) ** 2))  # the normal approximation, then exact
    while _power(n, alpha, effect_size) < power:
        n += 1
    return n


def _power(n: int, alpha: float, effect_size: float) -> float:
    critical = stats.t.ppf(1 - alpha, n - 1)
    return float(stats.nct.sf(critical, n - 1, effect_size * math.sqrt(n)))


def losses(task: str, predictions: Sequence[float], outcomes: Sequence[float]) -> np.ndarray:
    """Per-request loss: squared error (regression) or Brier score (classification, P(1))."""
    p = np.asarray(predictions, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        loss = (p - y) ** 2
    finite = np.isfinite(loss)
    # A garbage prediction (NaN, inf) counts as the worst loss, not as a hole in the sample.
    worst = 1.0 if task == "classification" else 10 * float(np.max(loss[finite], initial=1.0))
    return np.where(finite, loss, worst)


_MIN_PROBABILITY = 1e-12
"""Probabilities are clipped here before the log: a confident wrong answer costs 27.6, not inf."""


def class_losses(
    probabilities: Sequence[Mapping[str, float] | None], labels: Sequence[str | None]
) -> np.ndarray:
    """Per-request loss of a classifier's answers on the class each outcome names: the Brier
    score on P(second class) for two classes (as `losses`), the log-loss for three or more.

    Args:
        probabilities: each answer's class -> probability in the model's order (None: the
            request failed).
        labels: each outcome's class, a key of the answer's probabilities (None: the outcome
            names no class of that answer).
    """
    multiclass = any(p is not None and len(p) > 2 for p in probabilities)
    worst = -math.log(_MIN_PROBABILITY) if multiclass else 1.0
    out = np.full(len(labels), worst, dtype=float)
    for i, (answer, label) in enumerate(zip(probabilities, labels, strict=True)):
        if answer is None or label is None or label not in answer:
            continue  # a failed answer or an unknown class is the worst loss, not a hole
        p = answer[label]
        if not math.isfinite(p):
            continue
        if len(answer) == 2:
            second = list(answer)[1]
            p_second = answer[second]
            out[i] = (p_second - (1.0 if label == second else 0.0)) ** 2
        else:
            out[i] = -math.log(min(max(p, _MIN_PROBABILITY), 1.0))
    return out


@dataclass(frozen=True)
class PairedEvidence:
    """What the test saw: pairs, mean and sd of the loss differences, effect, t and p-values."""

    n: int
    champion_loss: float
    challenger_loss: float
    mean_difference: float
    sd_difference: float
    effect: float
    statistic: float
    p_better: float
    """P-value of "the challenger's loss is lower" (one-sided)."""
    p_worse: float
    """P-value of "the challenger's loss is higher" (one-sided)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready evidence (non-finite values as None)."""
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in asdict(self).items()}  # fmt: skip


def paired_evidence(champion: np.ndarray, challenger: np.ndarray) -> PairedEvidence:
    """Paired t-test of champion minus challenger losses (positive: the challenger is better)."""
    d = np.asarray(champion, dtype=float) - np.asarray(challenger, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else 0.0
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    if n < 2:
        t, p_better, p_worse = float("nan"), 1.0, 1.0
    elif sd == 0:
        # Identical losses everywhere: no evidence either way unless they differ by a constant.
        t = math.copysign(float("inf"), mean) if mean else 0.0
        p_better = 0.0 if mean > 0 else 1.0
        p_worse = 0.0 if mean < 0 else 1.0
    else:
        t = mean / (sd / math.sqrt(n))
        p_better = float(stats.t.sf(t, n - 1))
        p_worse = float(stats.t.cdf(t, n - 1))
    return PairedEvidence(
        n=n,
        champion_loss=float(np.mean(champion)) if n else float("nan"),
        challenger_loss=float(np.mean(challenger)) if n else float("nan"),
        mean_difference=mean,
        sd_difference=sd,
        effect=mean / sd if sd and math.isfinite(sd) else float("nan"),
        statistic=t,
        p_better=p_better,
        p_worse=p_worse,
    )


@dataclass(frozen=True)
class Verdict:
    """The test's outcome at one look: promote, roll back, or wait for more pairs."""

    action: Literal["promote", "rollback", "wait"]
    reason: str
    evidence: PairedEvidence
    horizon: int


def verdict(champion: np.ndarray, challenger: np.ndarray, alpha: float, power: float,
            effect_size: float) -> Verdict:  # fmt: skip
    """Decide on the pairs so far; only the first `horizon` pairs count (fixed horizon)."""
    horizon = required_samples(alpha, power, effect_size)
    champion, challenger = champion[:horizon], challenger[:horizon]
    evidence = paired_evidence(champion, challenger)
    n = evidence.n
    if n >= MIN_EARLY_ROLLBACK_PAIRS and evidence.p_worse < alpha:
        return Verdict(
            "rollback",
            f"challenger worse than champion on {n} paired requests: mean loss "
            f"{evidence.challenger_loss:.4g} vs {evidence.champion_loss:.4g} "
            f"(p={evidence.p_worse:.3g} < {alpha})",
            evidence,
            horizon,
        )
    if n < horizon:
        return Verdict("wait", f"{n}/{horizon} paired requests", evidence, horizon)
    if evidence.p_better < alpha:
        return Verdict(
            "promote",
            f"challenger better on {n} paired requests: mean loss {evidence.challenger_loss:.4g} "
            f"vs {evidence.champion_loss:.4g} (p={evidence.p_better:.3g} < {alpha})",
            evidence,
            horizon,
        )
    return Verdict(
        "rollback",
        f"no significant improvement after {n} paired requests (p={evidence.p_better:.3g} >= "
        f"{alpha}); the champion stays",
        evidence,
        horizon,
    )
