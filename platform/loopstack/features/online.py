"""Online feature values (and their event times) for serving, judged against their views' TTLs.

The online store keeps the latest row per entity whatever its age. Given the request time, a
feature whose row is older than its view's TTL (Feast's meaning: a TTL of 0 or None never
expires), or that has no row, is unavailable; the model spec's `stale_features` says whether
that rejects the request or passes the feature to the model as missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from feast import FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from loopstack.core.errors import InvalidInput
from loopstack.core.modelspec import ModelSpec
from loopstack.features.errors import EntityNotFound, StaleFeatures
from loopstack.features.registry import feature_service, service_features
from loopstack.features.store import as_utc

__all__ = ["OnlineFeatures", "online_features"]


@dataclass(frozen=True)
class OnlineFeatures:
    """Feature values of a batch of entity rows, in request order."""

    values: list[dict[str, Any]]
    """Per entity row: feature name → value (None where the stored value is null)."""
    event_timestamps: list[dict[str, datetime | None]]
    """Per entity row: feature name → event time of the row the value came from."""
    missing: list[list[str]] | None = None
    """Per entity row, when judged at a request time: the features passed as missing (no
    row, or a row older than the TTL), their values None; None when not judged."""


def online_features(
    store: FeatureStore,
    spec: ModelSpec,
    entity_rows: Sequence[Mapping[str, Any]],
    at: datetime | None = None,
) -> OnlineFeatures:
    """Read the model's FeatureService from the online store for the given entity rows.

    With `at` (the request time), each feature is judged against its view's TTL and the spec's
    `stale_features` applies: `reject` raises, `missing` sets the value to None and lists the
    feature in `missing`. Without `at`, values are returned whatever their age.

    Raises:
        InvalidInput: an entity row lacks the model's join key.
        UnknownFeatureService: the spec's feature service is not registered.
        EntityNotFound: an entity has no row at all in the online store (whole batch fails,
            naming every unknown entity: a prediction without features would be a silent guess),
            unless `at` is given and the spec says `stale_features: missing`.
        StaleFeatures: `at` is given, the spec says `reject`, and a feature of a known entity
            has no row or one older than its view's TTL (a 422).
    """
    key = spec.entity.join_key
    rows = [{key: row[key]} for row in entity_rows if key in row]
    if len(rows) != len(entity_rows):
        raise InvalidInput(f"every entity row of model {spec.name!r} needs the field {key!r}")
    if spec.feature_service is None:
        raise InvalidInput(f"model {spec.name!r} reads request fields only: it has no features")
    service = feature_service(store, spec.feature_service)
    names = list(service_features(service))
    if not rows:
        return OnlineFeatures(values=[], event_timestamps=[], missing=None if at is None else [])
    response = store.get_online_features(features=service, entity_rows=rows)
    proto = response.proto
    columns = dict(zip(proto.metadata.feature_names.val, proto.results, strict=True))
    found = [
        any(columns[n].statuses[i] != FieldStatus.NOT_FOUND for n in names)
        for i in range(len(rows))
    ]
    unknown = [rows[i] for i, ok in enumerate(found) if not ok]
    passing = at is not None and spec.stale_features == "missing"
    if unknown and not passing:
        raise EntityNotFound(spec.entity.name, unknown, service.name)
    data = response.to_dict()
    values = [{n: data[n][i] for n in names} for i in range(len(rows))]
    stamps = [{n: _when(columns[n], i) for n in names} for i in range(len(rows))]
    if at is None:
        return OnlineFeatures(values=values, event_timestamps=stamps)
    views = _views(store, service)
    late = [_unavailable(stamps[i], views, as_utc(at)) for i in range(len(rows))]
    if not passing:
        problems = [
            f"{spec.entity.name} {rows[i]!r}: {reason}"
            for i, row_late in enumerate(late)
            for reason in row_late.values()
        ]
        if problems:
            raise StaleFeatures(spec.name, problems)
    missing = [[n for n in names if any(n in group for group in row_late)] for row_late in late]
    for row_values, row_missing in zip(values, missing, strict=True):
        for name in row_missing:
            row_values[name] = None
    return OnlineFeatures(values=values, event_timestamps=stamps, missing=missing)


@dataclass(frozen=True)
class _View:
    name: str
    ttl: timedelta | None
    features: tuple[str, ...]


def _views(store: FeatureStore, service: Any) -> list[_View]:
    """The service's views with their TTLs."""
    return [
        _View(p.name, _ttl(store, p.name), tuple(f.name for f in p.features))
        for p in service.feature_view_projections
    ]


# Per registry: (registry, its cached proto and that proto's last update, view name -> TTL).
# Building a FeatureView from the registry costs milliseconds, too much per request; a TTL is
# read again once the registry's cache holds another version (refreshed from the file, or an
# apply in this process), so an applied change is seen as soon as Feast sees it.
_ttl_memo: dict[int, tuple[Any, Any, Any, dict[str, timedelta | None]]] = {}


def _ttl(store: FeatureStore, view: str) -> timedelta | None:
    registry = store.registry
    proto = getattr(registry, "cached_registry_proto", None)
    stamp = getattr(proto, "last_updated", None)
    version = None if stamp is None else (stamp.seconds, stamp.nanos)
    memo = _ttl_memo.get(id(registry))
    if memo is None or memo[0] is not registry or memo[1] is not proto or memo[2] != version:
        memo = (registry, proto, version, {})
        _ttl_memo[id(registry)] = memo
    ttls = memo[3]
    if view not in ttls:
        ttls[view] = store.get_feature_view(view, allow_registry_cache=True).ttl or None
    return ttls[view]


def _unavailable(
    stamps: Mapping[str, datetime | None], views: list[_View], at: datetime
) -> dict[tuple[str, ...], str]:
    """Feature names (per view) unavailable at `at` -> why, for one entity row."""
    out: dict[tuple[str, ...], str] = {}
    for view in views:
        written = [stamps[n] for n in view.features if stamps.get(n) is not None]
        shown = ", ".join(view.features)
        if not written:
            out[view.features] = f"no row of view {view.name!r} ({shown})"
            continue
        latest = max(w for w in written if w is not None)
        if view.ttl is not None and at - latest > view.ttl:
            out[view.features] = (
                f"{shown} of view {view.name!r} last written {_iso(latest)}, older than its "
                f"TTL {view.ttl} at request time {_iso(at)}"
            )
    return out


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _when(vector: Any, i: int) -> datetime | None:
    if vector.statuses[i] == FieldStatus.NOT_FOUND:
        return None
    stamp = vector.event_timestamps[i]
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=UTC)
