"""Errors of the CLI's own work (reading the user's files); each message names the fix."""

from __future__ import annotations

from pathlib import Path

from loopstack.core.errors import InvalidInput

__all__ = ["UnreadableOutcomes"]


class UnreadableOutcomes(InvalidInput):
    """An outcomes file for `loopstack feedback send` is missing, of another kind, or broken."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"cannot read {path}: {problem}; give a .csv or .parquet file with the columns "
            "prediction_id (or model, the entity key and event_time), outcome and observed_at"
        )
