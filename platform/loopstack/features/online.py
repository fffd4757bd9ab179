"""Online feature values (and their event times) for serving."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from feast import FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from loopstack.core.errors import InvalidInput
from loopstack.core.modelspec import ModelSpec
from loopstack.features.errors import EntityNotFound
from loopstack.features.registry import feature_service, service_features

__all__ = ["OnlineFeatures", "online_features"]


@dataclass(frozen=True)
class OnlineFeatures:
    """Feature values of a batch of entity rows, in request order."""

    values: list[dict[str, Any]]
    """Per entity row: feature name → value (None where the stored value is null)."""
    event_timestamps: list[dict[str, datetime | None]]
    """Per entity row: feature name → event time of the row the value came from."""


def online_features(
    store: FeatureStore, spec: ModelSpec, entity_rows: Sequence[Mapping[str, Any]]
) -> OnlineFeatures:
    """Read the model's FeatureService from the online store for the given entity rows.

    The online store keeps the latest materialized (or pushed) row per entity; it does not
    apply TTLs, so callers judge freshness from `event_timestamps`.

    Raises:
        InvalidInput: an entity row lacks the model's join key.
        UnknownFeatureService: the spec's feature service is not registered.
        EntityNotFound: an entity has no row at all in the online store (whole batch fails,
            naming every unknown entity: a prediction without features would be a silent guess).
    """
    key = spec.entity.join_key
    rows = [{key: row[key]} for row in entity_rows if key in row]
    if len(rows) != len(entity_rows):
        raise InvalidInput(f"every entity row of model {spec.name!r} needs the field {key!r}")
    service = feature_service(store, spec.feature_service)
    names = list(service_features(service))
    if not rows:
        return OnlineFeatures(values=[], event_timestamps=[])
    response = store.get_online_features(features=service, entity_rows=rows)
    proto = response.proto
    columns = dict(zip(proto.metadata.feature_names.val, proto.results, strict=True))
    found = [
        any(columns[n].statuses[i] != FieldStatus.NOT_FOUND for n in names)
        for i in range(len(rows))
    ]
    unknown = [rows[i] for i, ok in enumerate(found) if not ok]
    if unknown:
        raise EntityNotFound(spec.entity.name, unknown, service.name)
    data = response.to_dict()
    values = [{n: data[n][i] for n in names} for i in range(len(rows))]
    stamps = [{n: _when(columns[n], i) for n in names} for i in range(len(rows))]
    return OnlineFeatures(values=values, event_timestamps=stamps)


def _when(vector: Any, i: int) -> datetime | None:
    if vector.statuses[i] == FieldStatus.NOT_FOUND:
        return None
    stamp = vector.event_timestamps[i]
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=UTC)
