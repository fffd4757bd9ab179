"""Queries on the read model: one prediction, filtered pages of predictions, windowed quality."""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import RowMapping

from loopstack.core.errors import InvalidInput
from loopstack.core.events.store import reading
from loopstack.monitoring.feedback.errors import PredictionNotFound
from loopstack.monitoring.feedback.records import parse_time, to_iso
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.tables import counters, predictions, window_metrics, windows

__all__ = ["MAX_PAGE", "QualityQueries", "decode_cursor", "encode_cursor"]

MAX_PAGE = 1000


def encode_cursor(row: RowMapping, time_column: str = "request_time") -> str:
    """An opaque cursor after `row` (its time and prediction id)."""
    raw = f"{to_iso(row[time_column])}|{row['prediction_id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[Any, str]:
    """(request time, prediction id) of a cursor; raise InvalidInput if it is not one of ours."""
    try:
        when, _, pid = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return parse_time(when), pid
    except (ValueError, InvalidInput):
        raise InvalidInput(f"cursor {cursor!r} is not one this API returned") from None


def _prediction(row: RowMapping) -> dict[str, Any]:
    document = json.loads(row["document"])
    outcome = None
    if row["outcome_event_id"] is not None:
        outcome = {
            "value": json.loads(row["outcome_json"]),
            "source": row["outcome_source"],
            "observed_at": to_iso(row["observed_at"]),
            "event_id": row["outcome_event_id"],
            "joined_at": to_iso(row["joined_at"]),
            "window": row["window_no"],
        }
    return {
        "prediction_id": row["prediction_id"],
        "model": row["model"],
        "version": row["version"],
        "route": row["route"],
        "request_time": to_iso(row["request_time"]),
        "status": row["status"],
        "score": row["score"],
        "segments": json.loads(row["segments"]),
        "entity_key": document.get("entity_key"),
        "inputs": document.get("inputs"),
        "features": document.get("features"),
        "outputs": document.get("outputs"),
        "latency_ms": document.get("latency_ms"),
        "error": document.get("error"),
        "explanation": document.get("explanation"),
        "correlation": row["correlation"],
        "outcome": outcome,
    }


class QualityQueries:
    """Reads of the read model for the API (every answer is JSON-ready)."""

    def __init__(self, read_model: ReadModel) -> None:
        self._rm = read_model

    def prediction(self, prediction_id: str) -> dict[str, Any]:
        """What was predicted, by which version and route, with which features, and the outcome.

        Raises:
            PredictionNotFound: no such prediction (yet).
        """
        with reading(self._rm.engine) as conn:
            row = (
                conn.execute(
                    select(predictions).where(predictions.c.prediction_id == prediction_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise PredictionNotFound(prediction_id)
        return _prediction(row)

    def model_of(self, prediction_id: str) -> str | None:
        """The model of a stored prediction, or None."""
        with reading(self._rm.engine) as conn:
            found = conn.execute(
                select(predictions.c.model).where(predictions.c.prediction_id == prediction_id)
            ).first()
        return None if found is None else str(found[0])

    def predictions(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        route: str | None = None,
        has_outcome: bool | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """A page of predictions, newest request first, and the cursor of the next page."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1..{MAX_PAGE}, got {limit}")
        p = predictions.c
        query = select(predictions)
        for column, value in ((p.model, model), (p.version, version), (p.route, route)):
            if value is not None:
                query = query.where(column == value)
        if has_outcome is not None:
            query = query.where(
                p.outcome_event_id.is_not(None) if has_outcome else p.outcome_event_id.is_(None)
            )
        if cursor:
            when, pid = decode_cursor(cursor)
            query = query.where(
                or_(p.request_time < when, and_(p.request_time == when, p.prediction_id < pid))
            )
        query = query.order_by(p.request_time.desc(), p.prediction_id.desc()).limit(limit + 1)
        with reading(self._rm.engine) as conn:
            rows = list(conn.execute(query).mappings())
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [_prediction(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1]) if more and rows else None,
        }

    def quality(
        self,
        model: str,
        *,
        version: str | None = None,
        route: str | None = None,
        segment: str | None = None,
        last: int | None = None,
    ) -> dict[str, Any]:
        """Closed windows of a model, oldest first, per version and route: overall metrics,
        per segment value (`segment` keeps one column) and the best-worst gaps; plus how many
        joined predictions each version and route has."""
        w, m, c = windows.c, window_metrics.c, counters.c
        where = [w.model == model]
        if version is not None:
            where.append(w.version == version)
        if route is not None:
            where.append(w.route == route)
        with reading(self._rm.engine) as conn:
            heads = list(
                conn.execute(
                    select(windows).where(*where).order_by(w.version, w.route, w.window_no)
                ).mappings()
            )
            values = conn.execute(
                select(m.version, m.route, m.window_no, m.segment, m.metric, m.value).where(
                    m.model == model,
                    *([m.version == version] if version is not None else []),
                    *([m.route == route] if route is not None else []),
                )
            ).all()
            totals = conn.execute(
                select(c.version, c.route, c.joined).where(c.model == model)
            ).all()
        by_window: dict[tuple[str, str, int], list[tuple[str, str, float | None]]] = {}
        for v, r, n, seg, metric, value in values:
            by_window.setdefault((v, r, n), []).append((seg, metric, value))
        out = []
        for head in heads:
            key = (head["version"], head["route"], head["window_no"])
            out.append(self._window(head, by_window.get(key, []), segment))
        if last is not None:
            keep: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for item in out:
                keep.setdefault((item["version"], item["route"]), []).append(item)
            out = [i for items in keep.values() for i in items[-last:]]
        return {
            "model": model,
            "windows": out,
            "joined": [
                {"version": v, "route": r, "joined": j}
                for v, r, j in sorted(totals)
                if (version is None or v == version) and (route is None or r == route)
            ],
        }

    @staticmethod
    def _window(
        head: RowMapping, values: list[tuple[str, str, float | None]], only: str | None
    ) -> dict[str, Any]:
        metrics: dict[str, float | None] = {}
        segments: dict[str, dict[str, dict[str, float | None]]] = {}
        gaps: dict[str, dict[str, float | None]] = {}
        for seg, metric, value in values:
            if seg == "":
                metrics[metric] = value
                continue
            column, eq, seg_value = seg.partition("=")
            if only is not None and column != only:
                continue
            if eq:
                segments.setdefault(column, {}).setdefault(seg_value, {})[metric] = value
            else:
                gaps.setdefault(column, {})[metric] = value
        return {
            "version": head["version"],
            "route": head["route"],
            "window": head["window_no"],
            "start": to_iso(head["start_time"]),
            "end": to_iso(head["end_time"]),
            "size": head["size"],
            "closed_at": to_iso(head["closed_at"]),
            "metrics": metrics,
            "segments": segments,
            "gaps": gaps,
        }

    def joined(self, model: str) -> list[dict[str, Any]]:
        """Every joined prediction of a model (id, version, route, window, y, score, source), in
        window order."""
        p = predictions.c
        query = (
            select(
                p.prediction_id,
                p.version,
                p.route,
                p.request_time,
                p.window_no,
                p.outcome_value,
                p.score,
                p.outcome_source,
                p.segments,
            )
            .where(p.model == model, p.outcome_event_id.is_not(None))
            .order_by(p.version, p.route, p.request_time, p.prediction_id)
        )
        with reading(self._rm.engine) as conn:
            return [
                {**dict(r), "segments": json.loads(r["segments"])}
                for r in conn.execute(query).mappings()
            ]
