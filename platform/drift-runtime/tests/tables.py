"""Synthetic tables for the tests: reproducible, with a shift knob."""

from __future__ import annotations

from typing import Any

import numpy as np


def make_table(
    n: int, seed: int, shift: float = 0.0, colours: tuple[str, ...] = ("red", "blue")
) -> dict[str, Any]:
    """A table with two numeric features, one categorical feature and a prediction."""
    rng = np.random.default_rng(seed)
    return {
        "columns": {
            "temp": (rng.normal(size=n) + shift).tolist(),
            "hum": rng.uniform(0, 1, size=n).tolist(),
            "colour": rng.choice(colours, size=n).tolist(),
            "pred": (rng.normal(size=n) * 10 + 100 + 10 * shift).tolist(),
        }
    }


def fit_body(**options: Any) -> dict[str, Any]:
    """A fit body over `make_table`'s reference."""
    return {
        "reference": make_table(1000, seed=1),
        "categorical": ["colour"],
        "prediction": "pred",
        **options,
    }
