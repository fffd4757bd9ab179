"""Online features in the serving path: a model's FeatureService read in-process from Feast."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.core.settings import Settings
from loopstack.serving.errors import BadRequest

__all__ = ["FeatureLookup", "FeatureRows", "OnlineFeatureSource"]

_INT_TYPES = frozenset({"INT32", "INT64"})


@dataclass(frozen=True)
class FeatureLookup:
    """How a model reads its features: entity join key, feature names, feature service."""

    spec: ModelSpec
    join_key: str
    names: tuple[str, ...]
    integer_key: bool

    def coerce_key(self, value: Any) -> Any:
        """The entity key as Feast stores it; a key of the wrong type is the caller's mistake."""
        if isinstance(value, bool) or value is None:
            raise BadRequest(f"entity key {self.join_key!r} must be a value, got {value!r}")
        if self.integer_key:
            try:
                number = int(value)
            except (TypeError, ValueError, OverflowError):  # Overflow: an infinite float
                raise BadRequest(
                    f"entity key {self.join_key!r} must be an integer, got {value!r}"
                ) from None
            if isinstance(value, float) and not value.is_integer():
                raise BadRequest(f"entity key {self.join_key!r} must be an integer, got {value!r}")
            if not -(2**63) <= number < 2**63:  # Feast stores INT64 keys
                raise BadRequest(
                    f"entity key {self.join_key!r} is out of range (a 64-bit integer), got {value!r}"
                )
            return number
        if not isinstance(value, str | int):
            raise BadRequest(f"entity key {self.join_key!r} must be a string, got {value!r}")
        return str(value)


@dataclass(frozen=True)
class FeatureRows:
    """Fetched values and their event times, one dict per requested row."""

    values: list[dict[str, Any]]
    timestamps: list[dict[str, str | None]]
    feature_service: str
    missing: list[list[str]] | None = None
    """Per row: features passed to the model as missing (no row, or older than the view's TTL
    at request time), under the spec's `stale_features: missing`."""

    def missing_features(self) -> list[list[str]] | None:
        """Per row the missing features, or None when no row lacks one (answers stay as before)."""
        return self.missing if self.missing and any(self.missing) else None


class OnlineFeatureSource:
    """Opens the Feast store once per process; answers which models read features and fetches them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._store: Any = None
        self._lookups: dict[str, FeatureLookup | None] = {}

    def _open(self) -> Any:
        with self._lock:
            if self._store is None:
                from loopstack.features.store import open_store

                self._store = open_store(self._settings)
            return self._store

    def lookup(self, model: str) -> FeatureLookup | None:
        """The model's feature lookup, or None when it has no spec (all inputs come with requests)."""
        if model in self._lookups:
            return self._lookups[model]
        try:
            spec = load_model_spec(self._settings.models_dir, model)
        except Exception:  # no spec: a model served without the feature store
            self._lookups[model] = None
            return None
        if spec.feature_service is None:  # request fields only: nothing to look up
            self._lookups[model] = None
            return None
        from loopstack.features.registry import feature_service, service_features

        store = self._open()
        service = feature_service(store, spec.feature_service)
        entity = store.get_entity(spec.entity.name)
        integer = str(getattr(entity.value_type, "name", "")) in _INT_TYPES
        found = FeatureLookup(spec, spec.entity.join_key, tuple(service_features(service)), integer)
        self._lookups[model] = found
        return found

    def fetch(
        self, lookup: FeatureLookup, keys: Sequence[Any], at: float | None = None
    ) -> FeatureRows:
        """Feature values for each entity key (blocking: call it off the event loop).

        `at` is the request time (epoch seconds; a replay's event time): features older than
        their view's TTL then, or without a row, are handled as the spec's `stale_features`
        says. Without it, values are served whatever their age.

        Raises:
            EntityNotFound: an entity has no row in the online store (a 404, never a default),
                unless the spec passes missing features.
            StaleFeatures: a feature is stale or missing and the spec says `reject` (a 422).
        """
        from loopstack.features.online import online_features

        rows = [{lookup.join_key: key} for key in keys]
        when = None if at is None else datetime.fromtimestamp(at, tz=UTC)
        found = online_features(self._open(), lookup.spec, rows, when)
        stamps = [{n: _iso(t) for n, t in row.items()} for row in found.event_timestamps]
        service = lookup.spec.feature_service or ""
        return FeatureRows(found.values, stamps, service, found.missing)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
