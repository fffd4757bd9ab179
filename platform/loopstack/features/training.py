"""Point-in-time-correct training frames from the Feast offline store.

Feast's Dask offline store (`features.offline_store: file`) has a trap this module closes:
`get_historical_features` silently DROPS an entity row whose entity has feature rows, but none
inside [ts - ttl, ts] (rows of entities with no data at all are kept, with NaN); DuckDB keeps
them, with NaN. Both return rows in another order and may turn integer features with gaps into
float64. `historical_features` tags every entity row, re-attaches dropped rows with missing
features (or raises for rows with nothing known, with `missing="raise"`), restores the input
order and casts each feature back to the type its feature view declares.

Why NaN by default: "no feature row within the TTL" means "nothing known at that time",
which is what Feast already says for unknown entities; dropping the row would silently
remove labels (biasing the training set towards well-covered times).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

import pandas as pd
from feast import FeatureService, FeatureStore, FileSource
from feast.types import FeastType, PrimitiveFeastType

from loopstack.core.errors import InvalidInput
from loopstack.core.modelspec import ModelSpec
from loopstack.core.settings import Settings
from loopstack.features.errors import (
    EmptyWindow,
    FeatureRepoInvalid,
    FeaturesOutsideTtl,
    InvalidWindow,
)
from loopstack.features.offline import (
    LABEL_ORIGIN,
    ORIGINS,
    PREDICTION_ID,
    WRITTEN_AT,
    dataset_files,
)
from loopstack.features.registry import feature_service, label_source, service_features
from loopstack.features.store import as_utc, open_store

__all__ = [
    "CHUNK_ROWS",
    "EVENT_TIMESTAMP",
    "Missing",
    "LabelChoice",
    "historical_features",
    "label_counts",
    "read_labels",
    "resolve_labels",
    "training_frame",
]

log = logging.getLogger(__name__)

EVENT_TIMESTAMP = "event_timestamp"
_ROW = "__loopstack_row"
Missing = Literal["nan", "raise"]
LabelChoice = Literal["all", "feedback"]
CHUNK_ROWS = {"file": 1000, "duckdb": 100_000}
"""Entity rows per Feast call, by offline engine. The Dask store joins each entity row with EVERY
feature row of its entity before filtering by time (a city's hourly history: 1000 rows x 8761 =
8.8M rows), so chunks bound memory; the work stays proportional to rows x history (about
6 s/1000 here). DuckDB's as-of join needs no such bound: a chunk costs a query's overhead."""

# pandas dtype each Feast scalar type should come back as; nullable ints/bools keep their kind.
_PANDAS_DTYPES: dict[PrimitiveFeastType, str] = {
    PrimitiveFeastType.INT32: "Int32",
    PrimitiveFeastType.INT64: "Int64",
    PrimitiveFeastType.FLOAT32: "float32",
    PrimitiveFeastType.FLOAT64: "float64",
    PrimitiveFeastType.BOOL: "boolean",
    PrimitiveFeastType.STRING: "object",
    PrimitiveFeastType.UNIX_TIMESTAMP: "datetime64[ns, UTC]",
}


def _fix_dtype(column: pd.Series, dtype: FeastType) -> pd.Series:
    target = _PANDAS_DTYPES.get(dtype) if isinstance(dtype, PrimitiveFeastType) else None
    if target is None or str(column.dtype) == target:
        return column
    if target == "object":
        return column.astype(object).where(column.notna(), None)
    return column.astype(target)


def historical_features(
    store: FeatureStore,
    service: FeatureService,
    entity_df: pd.DataFrame,
    *,
    timestamp_column: str = EVENT_TIMESTAMP,
    missing: Missing = "nan",
    chunk_rows: int | None = None,
) -> pd.DataFrame:
    """Join the service's features onto `entity_df` as of each row's time: one row per input row.

    Args:
        store: the Feast store.
        service: the FeatureService whose features are joined.
        entity_df: entity rows: join keys, `timestamp_column`, any other columns (kept as-is).
        timestamp_column: column holding each row's event time (naive means UTC).
        missing: what to do with rows that get no feature at all (no feature row within the
            TTL): `nan` keeps them with missing features, `raise` raises FeaturesOutsideTtl.
        chunk_rows: distinct entity rows per Feast call (default: the engine's CHUNK_ROWS).

    Returns:
        `entity_df`'s columns in its row order (index reset), then one column per feature,
        typed as the feature views declare (Int64 stays a nullable Int64).

    Raises:
        InvalidInput: a join key or the timestamp column is absent or null.
        FeaturesOutsideTtl: rows were dropped and `missing` is `raise`.
    """
    features = service_features(service)
    keys = sorted({k for p in service.feature_view_projections for k in _join_keys(store, p.name)})
    absent = [c for c in [*keys, timestamp_column] if c not in entity_df.columns]
    if absent:
        raise InvalidInput(f"entity rows lack column(s) {absent} needed by {service.name!r}")
    rows = entity_df.reset_index(drop=True)
    query = rows[keys].copy()
    query[EVENT_TIMESTAMP] = pd.to_datetime(rows[timestamp_column], utc=True)
    if query.isna().any().any():
        raise InvalidInput(
            f"entity rows have null join keys or event times ({[*keys, EVENT_TIMESTAMP]})"
        )
    # Feast also collapses rows with the same keys and time: ask once per distinct row.
    unique = query.drop_duplicates().reset_index(drop=True)
    unique[_ROW] = range(len(unique))
    step = chunk_rows or CHUNK_ROWS.get(store.config.offline_store.type, 1000)
    found = _feast_join(store, service, unique, step)
    row_of = query.merge(unique, on=[*keys, EVENT_TIMESTAMP], how="left")[_ROW]
    joined = found.reindex(row_of.to_numpy())[list(features)].reset_index(drop=True)
    # Rows Dask dropped and rows DuckDB returned empty alike: nothing known at that time.
    hit = joined.isna().all(axis=1)
    if hit.any():
        first = query[hit].iloc[0]
        example = ", ".join(f"{k}={first[k]!r}" for k in [*keys, EVENT_TIMESTAMP])
        if missing == "raise":
            raise FeaturesOutsideTtl(service.name, int(hit.sum()), len(rows), example)
        log.warning(
            "%s: %d of %d entity rows had no feature row within the TTL (e.g. %s); "
            "kept with missing features",
            service.name,
            hit.sum(),
            len(rows),
            example,
        )
    for name, dtype in features.items():
        joined[name] = _fix_dtype(joined[name], dtype)
    clashes = set(features) & set(rows.columns)
    return pd.concat([rows.drop(columns=list(clashes)), joined], axis=1)


def _feast_join(
    store: FeatureStore, service: FeatureService, unique: pd.DataFrame, chunk_rows: int
) -> pd.DataFrame:
    """Feast's point-in-time join, chunk by chunk; indexed by `_ROW` (dropped rows absent)."""
    step = max(chunk_rows, 1)
    parts = [
        store.get_historical_features(entity_df=unique.iloc[i : i + step], features=service).to_df()
        for i in range(0, len(unique), step)
    ]
    if not parts:
        return pd.DataFrame(columns=list(service_features(service)), index=pd.Index([], name=_ROW))
    found = pd.concat(parts).set_index(_ROW)
    if not found.index.is_unique:  # would silently weight some labels twice
        raise FeatureRepoInvalid(f"Feast returned duplicated entity rows for {service.name!r}")
    return found


def _join_keys(store: FeatureStore, view_name: str) -> list[str]:
    view = store.get_feature_view(view_name)
    return [column.name for column in view.entity_columns]


def read_labels(
    store: FeatureStore, source: FileSource, start: datetime, end: datetime
) -> pd.DataFrame:
    """Label rows of `source` with event time in [start, end), sorted by time.

    A state-dir dataset (`loopstack.features.offline`) is read file by file: the seed copy of
    the repository file and the parts fed back outcomes were appended as. No file: no rows.
    """
    ts = source.timestamp_field
    window = [(ts, ">=", pd.Timestamp(start)), (ts, "<", pd.Timestamp(end))]
    path = str(FileSource.get_uri_for_file_path(store.config.repo_path, source.path))
    try:
        parts = [pd.read_parquet(p, filters=window) for p in dataset_files(path) if p.exists()]
    except FileNotFoundError:  # parts merged while we read: their rows are in the merged one
        parts = [pd.read_parquet(p, filters=window) for p in dataset_files(path)]
    parts = [p for p in parts if not p.empty] or parts[:1]
    if not parts:
        return pd.DataFrame(columns=[ts])
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    frame[ts] = pd.to_datetime(frame[ts], utc=True)
    return frame.sort_values(ts, kind="stable").reset_index(drop=True)


def resolve_labels(labels: pd.DataFrame, join_key: str, timestamp: str) -> pd.DataFrame:
    """One label per prediction, fed-back labels over file rows of the same entity and time.

    A prediction's label may have been written several times (a later observation, a human
    decision): the human one wins, then the latest written (the rule of live quality). A file
    row with the same join key and event time as a fed-back one is the same observation.
    Frames without the dataset columns (a plain label file) are returned as they are.
    """
    if LABEL_ORIGIN not in labels.columns or labels.empty:
        return labels
    origin = labels[LABEL_ORIGIN].fillna("file")
    fed = labels[origin != "file"].copy()
    if not fed.empty:
        fed["__human"] = fed[LABEL_ORIGIN] == "human"
        fed["__order"] = range(len(fed))
        fed = fed.sort_values(["__human", WRITTEN_AT, "__order"], kind="stable")
        fed = fed.drop_duplicates(subset=[PREDICTION_ID], keep="last")
        fed = fed.drop(columns=["__human", "__order"])
    files = labels[origin == "file"]
    if not fed.empty and not files.empty:
        seen = pd.MultiIndex.from_frame(fed[[join_key, timestamp]].astype(str))
        same = pd.MultiIndex.from_frame(files[[join_key, timestamp]].astype(str)).isin(seen)
        files = files[~same]
    frame = pd.concat([files, fed], ignore_index=True) if not fed.empty else files
    return frame.sort_values(timestamp, kind="stable").reset_index(drop=True)


def training_frame(
    settings: Settings,
    spec: ModelSpec,
    start: datetime,
    end: datetime,
    *,
    store: FeatureStore | None = None,
    missing: Missing = "nan",
    labels: LabelChoice = "all",
    with_origin: bool = False,
) -> pd.DataFrame:
    """Point-in-time-correct training rows of a model: its label rows in [start, end) plus features.

    Entity rows are the model's label rows with their event times; each gets the feature values
    known at that time. Label rows come from the label source its FeatureService names in the
    `loopstack.label_source` tag: after apply, a state-dir dataset holding the repository's label
    file (`file` rows, if any) and every outcome fed back for the model's predictions
    (`feedback`, or `human` from the review queue), one per prediction (`resolve_labels`).
    Columns: the label rows' columns (join key, event_timestamp, request fields, target, ...)
    then the service's features; rows sorted by event time.

    Args:
        labels: `all` (file and fed-back rows) or `feedback` (fed-back rows only).
        with_origin: keep `label_origin` and `prediction_id` (lineage); otherwise the dataset's
            bookkeeping columns are dropped.

    Raises:
        InvalidWindow: start >= end.
        InvalidInput: `labels` is neither `all` nor `feedback`.
        UnknownFeatureService: the spec's feature service is not registered.
        EmptyWindow: no label rows in the window.
        FeatureRepoInvalid: the label source lacks the target, the join key or a request field.
        FeaturesOutsideTtl: see `historical_features` (only with `missing="raise"`).
    """
    start, end = as_utc(start), as_utc(end)
    if start >= end:
        raise InvalidWindow(start, end)
    if labels not in ("all", "feedback"):
        raise InvalidInput(f"labels must be 'all' or 'feedback', got {labels!r}")
    if spec.feature_service is None:
        raise FeatureRepoInvalid(
            f"model {spec.name!r} reads request fields only (no feature_service), so the "
            "feature store holds no training data for it: train it outside Loopstack and adopt "
            f"it with `loopstack models register {spec.name}`, or give its spec a "
            "feature_service whose label source holds the labels"
        )
    store = store or open_store(settings)
    service = feature_service(store, spec.feature_service)
    source = label_source(store, service)
    rows = read_labels(store, source, start, end)
    if rows.empty:
        raise EmptyWindow(spec.name, source.name, start, end)
    needed = [spec.entity.join_key, spec.target, *spec.request_fields]
    lacking = [c for c in needed if c not in rows.columns]
    if lacking:
        raise FeatureRepoInvalid(
            f"label source {source.name!r} of model {spec.name!r} lacks column(s) {lacking}; "
            "add them to the label file or fix the model spec"
        )
    rows = resolve_labels(rows, spec.entity.join_key, source.timestamp_field)
    if LABEL_ORIGIN not in rows.columns:
        rows[LABEL_ORIGIN] = "file"
        rows[PREDICTION_ID] = None
    if labels == "feedback":
        rows = rows[rows[LABEL_ORIGIN] != "file"].reset_index(drop=True)
        if rows.empty:
            raise EmptyWindow(spec.name, f"{source.name} (fed-back rows)", start, end)
    dropped = [WRITTEN_AT] if with_origin else [WRITTEN_AT, LABEL_ORIGIN, PREDICTION_ID]
    rows = rows.drop(columns=[c for c in dropped if c in rows.columns])
    frame = historical_features(
        store, service, rows, timestamp_column=source.timestamp_field, missing=missing
    )
    # The target goes last so `frame.drop(columns=target)` leaves inputs in a stable order.
    return frame[[c for c in frame.columns if c != spec.target] + [spec.target]]


def label_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per label origin (`file`, `feedback`, `human`) of a frame with `label_origin`."""
    found = frame[LABEL_ORIGIN].fillna("file").value_counts() if LABEL_ORIGIN in frame else {}
    return {origin: int(found.get(origin, 0)) for origin in ORIGINS}
