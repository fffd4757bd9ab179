"""Refuse, at apply, feature definitions that Feast accepts but the offline engine cannot use.

Feast registers them happily and the failure comes later, in every training. Found by trying
(Feast 0.67, ibis 12, DuckDB):
- a TTL of a day or more that is not whole days (`timedelta(hours=36)`): the DuckDB engine
  (through ibis) builds the expiry as an interval literal of one unit, and a timedelta holding
  days and seconds fails with "Unable to infer interval type from mixed units". Whole days
  (`days=2`) and anything under a day (`hours=2`, `minutes=90`, `seconds=1.5`) work. The Dask
  (`file`) engine takes any TTL.
- a negative TTL: every point-in-time join finds nothing.
- a feature view whose offline source is not a file: both engines read files only.
- a FeatureService whose `loopstack.label_source` tag names no FileSource of the repository:
  training has no labels to join.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import FeatureView, FileSource
from feast.repo_contents import RepoContents

from loopstack.features.errors import FeatureDefinitionRefused
from loopstack.features.registry import LABEL_SOURCE_TAG
from loopstack.features.repo import Origins

__all__ = ["check_definitions", "ttl_problem"]


def ttl_problem(ttl: timedelta | None, offline_store: str) -> str | None:
    """Why the offline engine cannot use this TTL, with the fix; None when it can."""
    if ttl is None or not ttl:
        return None
    if ttl < timedelta(0):
        return f"ttl {ttl} is negative; use a positive timedelta, or timedelta(0) for no expiry"
    if offline_store == "duckdb" and ttl.days and (ttl.seconds or ttl.microseconds):
        lower, upper = ttl.days, ttl.days + 1
        return (
            f"ttl {_shown(ttl)} mixes days with hours/seconds, which the DuckDB offline engine "
            'cannot use ("Unable to infer interval type from mixed units" in every training); '
            f"use whole days (timedelta(days={lower}) or timedelta(days={upper})) or a TTL "
            "under one day"
        )
    return None


def _shown(ttl: timedelta) -> str:
    hours = ttl.total_seconds() / 3600
    return f"timedelta(hours={hours:g})" if hours == int(hours) else f"{ttl}"


def check_definitions(contents: RepoContents, origins: Origins, offline_store: str) -> None:
    """Raise FeatureDefinitionRefused naming every unusable definition (file, object, fix)."""
    problems: list[str] = []

    def refuse(kind: str, name: str, why: str) -> None:
        where = origins.get((kind, name))
        problems.append(f"{_file(where)}{kind} {name!r}: {why}")

    for view in contents.feature_views:
        why = ttl_problem(view.ttl, offline_store)
        if why:
            refuse("feature view", view.name, why)
        if not _file_backed(view):
            source = type(view.batch_source).__name__
            refuse(
                "feature view",
                view.name,
                f"its offline source is a {source}; the {offline_store} offline engine reads "
                "files only: use a FileSource (or a PushSource whose batch_source is one)",
            )
    files = {s.name for s in contents.data_sources if isinstance(s, FileSource)}
    for service in contents.feature_services:
        label = service.tags.get(LABEL_SOURCE_TAG)
        if label is not None and label not in files:
            refuse(
                "feature service",
                service.name,
                f"tag {LABEL_SOURCE_TAG}={label!r} names no FileSource of the repository "
                f"(FileSources: {', '.join(sorted(files)) or 'none'}); define it or fix the tag",
            )
    if problems:
        raise FeatureDefinitionRefused(problems)


def _file_backed(view: FeatureView) -> bool:
    source = view.batch_source
    return isinstance(source, FileSource) or isinstance(
        getattr(source, "batch_source", None), FileSource
    )


def _file(path: Path | None) -> str:
    return f"{path}: " if path is not None else ""
