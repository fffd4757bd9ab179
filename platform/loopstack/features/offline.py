"""Offline datasets in the state dir: where outcomes and the features derived from them land.

At apply time every label source (the FileSource a FeatureService names in its
`loopstack.label_source` tag) and every PushSource's batch source is registered at a dataset
folder `<state dir>/feast/offline/<source name>/` instead of the repository file:
- `seed.parquet` is a copy of the repository file (rewritten at each apply; absent when the
  repository has no file: a model may learn from feedback alone);
- `part-*.parquet` are the rows the feedback consumer appends, each written whole (temporary
  file, then rename), so readers never see half a part and repository files are never changed;
  past `MAX_PARTS` they are merged into one.

Label datasets carry `prediction_id` (None for file rows), `label_origin` (`file`, `feedback` or
`human`) and `written_at`; push datasets carry `written_at`, registered as the source's created
timestamp so a re-pushed row (same entity and time, newer values) wins offline as it did online.
Feast reads a folder through its glob (`<folder>/*.parquet`, DuckDB and Dask alike).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore, FileSource
from feast.data_source import PushSource
from feast.errors import DataSourceObjectNotFoundException
from feast.repo_contents import RepoContents

from loopstack.features.errors import FeatureRepoInvalid, UnknownFeatureView
from loopstack.features.registry import LABEL_SOURCE_TAG

__all__ = [
    "LABEL_ORIGIN",
    "MAX_PARTS",
    "ORIGINS",
    "PREDICTION_ID",
    "SEED",
    "WRITTEN_AT",
    "append_rows",
    "dataset_files",
    "offline_dir",
    "seed_datasets",
]

log = logging.getLogger(__name__)

SEED = "seed.parquet"
PREDICTION_ID = "prediction_id"
LABEL_ORIGIN = "label_origin"
WRITTEN_AT = "written_at"
ORIGINS = ("file", "feedback", "human")
_GLOB = "*.parquet"
_EPOCH = pd.Timestamp(0, tz="UTC")
MAX_PARTS = 200
"""Parts a dataset may hold before they are merged into one (a drain writes one per source)."""


def offline_dir(feast_folder: Path) -> Path:
    """Folder of the offline datasets: `<state dir>/feast/offline`."""
    return feast_folder / "offline"


def _write(table: pa.Table, path: Path) -> None:
    """Write a parquet file whole: a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _local(source: object) -> FileSource | None:
    if isinstance(source, FileSource) and "://" not in source.path:
        return source
    return None


def seed_datasets(contents: RepoContents, feast_folder: Path, write: bool = True) -> list[str]:
    """Point label and push batch sources at their state-dir datasets; (re)write their seeds.

    Call after relative paths are made absolute. Returns the names of the sources moved.
    `write=False` (a dry run) only points the sources: no folder or seed is written.
    """
    labels = {s.tags.get(LABEL_SOURCE_TAG) for s in contents.feature_services} - {None}
    pushed: list[FileSource] = []
    for source in contents.data_sources:
        batch = _local(getattr(source, "batch_source", None))
        if isinstance(source, PushSource) and batch is not None:
            pushed.append(batch)
    moved: list[str] = []
    for source in contents.data_sources:
        file = _local(source)
        if file is None or Path(file.path).name == _GLOB:
            continue
        is_label = file.name in labels
        if not is_label and not any(file is p for p in pushed):
            continue
        folder = offline_dir(feast_folder) / file.name
        if write:
            folder.mkdir(parents=True, exist_ok=True)
            _seed(Path(file.path), folder / SEED, file.timestamp_field, is_label)
        file.file_options.uri = str(folder / _GLOB)
        if not is_label:
            file.created_timestamp_column = WRITTEN_AT
        moved.append(file.name)
    return moved


def _seed(repo_file: Path, seed: Path, timestamp: str, is_label: bool) -> None:
    if not repo_file.is_file():
        seed.unlink(missing_ok=True)  # the repository dropped its file: so do we
        log.info("offline dataset %s: no repository file %s, no seed", seed.parent, repo_file)
        return
    frame = pd.read_parquet(repo_file)
    if is_label:
        frame[PREDICTION_ID] = pd.Series([None] * len(frame), dtype=object)
        frame[LABEL_ORIGIN] = "file"
        frame[WRITTEN_AT] = _EPOCH
    else:
        # A file row is known from its own time; a pushed row for the same time is newer.
        frame[WRITTEN_AT] = pd.to_datetime(frame[timestamp], utc=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if is_label:
        table = table.set_column(
            table.schema.get_field_index(PREDICTION_ID),
            PREDICTION_ID,
            table.column(PREDICTION_ID).cast(pa.string()),
        )
    _write(table, seed)


def _folder(store: FeatureStore, source_name: str) -> Path:
    try:
        source = store.get_data_source(source_name)
    except DataSourceObjectNotFoundException:
        known = [s.name for s in store.list_data_sources()]
        raise UnknownFeatureView("data source", source_name, known) from None
    file = _local(source.batch_source if isinstance(source, PushSource) else source)
    if file is None or Path(file.path).name != _GLOB:
        raise FeatureRepoInvalid(
            f"data source {source_name!r} is not an offline dataset of the state dir; run the "
            "features apply step (`loopstack.features.store.apply`) to register it as one"
        )
    folder = Path(file.path).parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dataset_files(path: str) -> list[Path]:
    """The parquet files a FileSource path names: the files of a dataset glob, or the file."""
    p = Path(path)
    if p.name == _GLOB:
        return sorted(f for f in p.parent.glob(_GLOB) if f.is_file())
    return [p]


def append_rows(store: FeatureStore, source_name: str, frame: pd.DataFrame, part: str) -> Path:
    """Write `frame` as the part `part` of the dataset of `source_name` (a FileSource or a
    PushSource, whose batch source is used); return the file.

    Columns are cast to the seed's types and ordered like it (so every engine reads one
    schema); a seed column the rows lack is null (e.g. a file's `label_timestamp`). The same
    `part` written again replaces the earlier file (a retried drain).

    Raises:
        UnknownFeatureView: no such source is registered.
        FeatureRepoInvalid: the source is not a state-dir dataset (apply first).
    """
    folder = _folder(store, source_name)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    seed = folder / SEED
    if seed.is_file():
        schema = pq.read_schema(seed).remove_metadata()
        for name in schema.names:
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
        table = table.select(schema.names).cast(schema, safe=False)
    path = folder / f"part-{part}.parquet"
    _write(table, path)
    parts = sorted(folder.glob("part-*.parquet"))
    if len(parts) > MAX_PARTS:
        _compact(folder, parts)
    return path


def _compact(folder: Path, parts: list[Path]) -> None:
    """Merge the parts into one: written whole before the merged ones go (a crash in between
    leaves rows twice, which readers resolve: one label per prediction, the latest lag row)."""
    tables = [pq.read_table(p) for p in parts]
    merged = pa.concat_tables(tables, promote_options="permissive")
    _write(merged, folder / f"part-merged-{time.time_ns()}.parquet")
    for p in parts:
        p.unlink(missing_ok=True)
    log.info("offline dataset %s: %d parts merged into one", folder.name, len(parts))
