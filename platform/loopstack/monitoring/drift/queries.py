"""Reads of the drift read table, for `GET /v1/models/{name}/drift` (and `loopstack drift`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from loopstack.core.events.store import reading
from loopstack.monitoring.drift.store import DriftStore
from loopstack.monitoring.drift.tables import drift_failures, drift_results, drift_windows
from loopstack.monitoring.drift.windows import to_iso

__all__ = ["DriftQueries"]


class DriftQueries:
    """The latest reported windows of a model, newest first, with their per-feature tests."""

    def __init__(self, store: DriftStore) -> None:
        self._store = store

    def windows(
        self, model: str, limit: int = 50, version: str | None = None
    ) -> list[dict[str, Any]]:
        """Up to `limit` reported windows of `model` (optionally one version), newest first.

        Each window: version, window_no, start, end, sample_size, status (`ok`,
        `not_enough_data` or `failed`), drifted, `error` (why a failed window was given up,
        else null) and `features` (kind, feature, test, statistic, effect, p_value, threshold,
        significant, drifted) in report order.
        """
        w = drift_windows.c
        f = drift_failures.c
        query = (
            select(drift_windows, f.reason, f.attempts)
            .outerjoin(
                drift_failures,
                (f.model == w.model) & (f.version == w.version) & (f.window_no == w.window_no),
            )
            .where(
                w.model == model,
                ((w.state == "reported") & w.status.in_(("ok", "not_enough_data")))
                | (w.state == "failed"),
            )
        )
        if version is not None:
            query = query.where(w.version == version)
        query = query.order_by(w.end_time.desc(), w.window_no.desc()).limit(limit)
        r = drift_results.c
        out: list[dict[str, Any]] = []
        with reading(self._store.engine) as conn:
            heads = list(conn.execute(query).mappings())
            for head in heads:
                tests = conn.execute(
                    select(
                        r.kind, r.feature, r.test, r.statistic, r.effect, r.p_value,
                        r.threshold, r.significant, r.drifted,
                    ).where(
                        r.model == model,
                        r.version == head["version"],
                        r.window_no == head["window_no"],
                        r.feature != "",
                    )
                ).mappings()  # fmt: skip
                out.append(
                    {
                        "version": head["version"],
                        "window_no": head["window_no"],
                        "start": to_iso(head["start_time"]),
                        "end": to_iso(head["end_time"]),
                        "sample_size": head["size"],
                        "status": "failed" if head["state"] == "failed" else head["status"],
                        "drifted": bool(head["drifted"]),
                        "error": _error(head) if head["state"] == "failed" else None,
                        "features": [dict(t) for t in tests],
                    }
                )
        return out


def _error(head: Any) -> str:
    if head["reason"] is None:  # failed before failures were recorded
        return "scoring failed (the reason was not recorded)"
    return f"{head['reason']} (after {head['attempts']} attempt(s); not retried)"
