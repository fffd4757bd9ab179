"""Test-only sklearn wrappers: a challenger that is slow, or that always raises.

They are pickled by value (cloudpickle), so the inference server loads them without this module.
"""

from __future__ import annotations

import time
from typing import Any

from sklearn.base import BaseEstimator, RegressorMixin


class SleepyRegressor(RegressorMixin, BaseEstimator):
    """Answers like `inner`, after sleeping `sleep_s` seconds."""

    def __init__(self, inner: Any = None, sleep_s: float = 2.0) -> None:
        self.inner = inner
        self.sleep_s = sleep_s

    def fit(self, x: Any, y: Any) -> SleepyRegressor:
        """Already fitted: `inner` is."""
        return self

    def predict(self, x: Any) -> Any:
        """Sleep, then predict."""
        time.sleep(self.sleep_s)
        return self.inner.predict(x)


class FailingRegressor(RegressorMixin, BaseEstimator):
    """Raises on every prediction."""

    def __init__(self, message: str = "challenger exploded") -> None:
        self.message = message

    def fit(self, x: Any, y: Any) -> FailingRegressor:
        """Nothing to fit."""
        return self

    def predict(self, x: Any) -> Any:
        """Always raise."""
        raise RuntimeError(self.message)
