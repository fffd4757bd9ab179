"""Fed-back outcomes become training labels in the Feast offline store.

`record_label` runs in the projector's transaction, so a label row is recorded exactly once per
change of a request's winning outcome (a duplicated or re-read event never reaches it; a crash
rolls it back with the event's processed mark). The row is what training needs: the entity's join
key, the request fields the prediction was made with, and the outcome as the target, stamped at
the prediction's request time.

`LabelExporter.drain` (a housekeeping step of the consumer) appends pending rows to the model's
label dataset (`loopstack.features.offline`) and marks them exported. A part is named by its
first row's sequence number: a drain retried after a crash rewrites the same part with the same
rows (or more), so each row reaches the offline store once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from loopstack.core.errors import LoopstackError
from loopstack.monitoring.feedback.catalog import ModelCatalog, ModelInfo
from loopstack.monitoring.feedback.records import OutcomeRow, lookup_field
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.tables import training_labels

__all__ = ["LabelExporter", "label_row", "record_label"]

log = logging.getLogger(__name__)


def label_row(info: ModelInfo, document: dict[str, Any], value: Any) -> dict[str, Any] | None:
    """The label row of a logged prediction (its `document`) with outcome `value` as the target;
    None when the prediction does not name its entity (no row training could join)."""
    key = (document.get("entity_key") or {}).get(info.join_key)
    if key is None:
        key = lookup_field(document, info.join_key)
    if key is None:
        return None
    row = {name: lookup_field(document, name) for name in info.request_fields}
    row[info.join_key] = key
    row[info.target] = value
    return row


def record_label(
    conn: Connection, info: ModelInfo, prediction: RowMapping, outcome: OutcomeRow, now: datetime
) -> None:
    """Record the training label the winning `outcome` gives `prediction` (in the event's
    transaction). Models without a spec have no target to name: nothing is recorded."""
    # A class name (multiclass, text labels) is the target as sent; anything else its number.
    target = outcome.value if outcome.value is not None else outcome.label
    if not info.has_spec or target is None:
        return
    row = label_row(info, json.loads(prediction["document"]), target)
    if row is None:
        log.debug("feedback: prediction %s names no entity; no label", prediction["prediction_id"])
        return
    conn.execute(
        insert(training_labels).values(
            model=prediction["model"],
            prediction_id=prediction["prediction_id"],
            event_time=prediction["request_time"],
            origin="human" if outcome.source == "human" else "feedback",
            row=json.dumps(row, default=str),
            written_at=now,
            exported=False,
        )
    )


class LabelExporter:
    """Appends recorded label rows to each model's label dataset in the offline store."""

    def __init__(self, read_model: ReadModel, catalog: ModelCatalog, open_store: Callable[[], Any]):
        self._rm = read_model
        self._catalog = catalog
        self._open_store = open_store
        self._store: Any = None

    def drain(self, limit: int = 10_000) -> int:
        """Export up to `limit` pending rows per model; return how many were exported.

        A model whose label source cannot take rows (not registered, not applied) keeps them
        pending and is logged; the other models' rows still go.
        """
        t = training_labels.c
        with self._rm.engine.connect() as conn:
            models = list(conn.execute(select(t.model).where(t.exported.is_(False)).distinct()))
        exported = 0
        for (model,) in sorted(models):
            try:
                exported += self._export(model, limit)
            except LoopstackError as exc:  # the message names the fix; retried next time
                log.warning("feedback: training labels of %r wait: %s", model, exc)
            except Exception:  # one model's broken source must not hold back the others
                log.exception("feedback: exporting training labels of %r failed", model)
        return exported

    def _export(self, model: str, limit: int) -> int:
        import pandas as pd

        from loopstack.features.offline import (
            LABEL_ORIGIN,
            PREDICTION_ID,
            WRITTEN_AT,
            append_rows,
        )
        from loopstack.features.registry import feature_service, label_source

        t = training_labels.c
        with self._rm.engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(t.seq, t.prediction_id, t.event_time, t.origin, t.row, t.written_at)
                    .where(t.exported.is_(False), t.model == model)
                    .order_by(t.seq)
                    .limit(limit)
                ).mappings()
            )
        if not rows:
            return 0
        if self._store is None:
            self._store = self._open_store()
        info = self._catalog.get(model)
        if info.has_spec and not info.feature_service:
            return 0  # request fields only: no label source in the feature store to append to
        source = label_source(self._store, feature_service(self._store, info.feature_service))
        frame = pd.DataFrame([json.loads(r["row"]) for r in rows])
        frame[source.timestamp_field] = pd.to_datetime(
            [r["event_time"].replace(tzinfo=UTC) for r in rows], utc=True
        )
        frame[PREDICTION_ID] = [r["prediction_id"] for r in rows]
        frame[LABEL_ORIGIN] = [r["origin"] for r in rows]
        frame[WRITTEN_AT] = pd.to_datetime(
            [r["written_at"].replace(tzinfo=UTC) for r in rows], utc=True
        )
        path = append_rows(self._store, source.name, frame, f"labels-{rows[0]['seq']:012d}")
        seqs = [r["seq"] for r in rows]
        with self._rm.engine.begin() as conn:
            for i in range(0, len(seqs), 500):
                conn.execute(
                    update(training_labels)
                    .where(t.seq.in_(seqs[i : i + 500]))
                    .values(exported=True)
                )
        log.info("feedback: %d training labels of %r written to %s", len(rows), model, path)
        return len(rows)
