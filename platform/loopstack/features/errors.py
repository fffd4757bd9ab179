"""Errors of the features layer, each under a core category and saying what to do."""

from __future__ import annotations

from datetime import datetime

from loopstack.core.errors import ConfigurationError, InvalidInput, NotFound

__all__ = [
    "EmptyWindow",
    "EntityNotFound",
    "FeatureDefinitionRefused",
    "FeatureRepoInvalid",
    "FeaturesOutsideTtl",
    "StaleFeatures",
    "InvalidWindow",
    "UnknownFeatureService",
    "UnknownFeatureView",
]


class UnknownFeatureService(NotFound):
    """The model spec names a FeatureService the registry does not hold: apply the repo."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"feature service {name!r} is not in the Feast registry "
            f"(known: {', '.join(sorted(known)) or 'none'}); define it in feature_repo/ and run "
            "the features apply step (`loopstack.features.store.apply`), or fix `feature_service` "
            "in the model spec"
        )


class UnknownFeatureView(NotFound):
    """A feature view (or data source) named in the repo is not in the registry: apply the repo."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        super().__init__(
            f"{kind} {name!r} is not in the Feast registry "
            f"(known: {', '.join(sorted(known)) or 'none'}); define it in feature_repo/ and run "
            "the features apply step (`loopstack.features.store.apply`)"
        )


class EntityNotFound(NotFound):
    """The online store has no features for the entity: check its id or materialize first."""

    def __init__(self, entity: str, keys: list[dict[str, object]], service: str) -> None:
        shown = ", ".join(repr(k) for k in keys[:5]) + (" ..." if len(keys) > 5 else "")
        super().__init__(
            f"{entity} {shown} has no features in the online store for {service!r}; "
            "check the id, or materialize the feature views that cover it"
        )
        self.entity = entity
        self.keys = keys


class InvalidWindow(InvalidInput):
    """A time window is empty or inverted: pass start < end."""

    def __init__(self, start: datetime, end: datetime) -> None:
        super().__init__(
            f"time window [{start.isoformat()}, {end.isoformat()}) is empty or inverted; "
            "pass a start strictly before the end"
        )


class EmptyWindow(InvalidInput):
    """No label rows fall in the window: widen it or check the label source."""

    def __init__(self, model: str, source: str, start: datetime, end: datetime) -> None:
        super().__init__(
            f"model {model!r}: label source {source!r} has no rows in "
            f"[{start.isoformat()}, {end.isoformat()}); widen the window or check the data"
        )


class FeaturesOutsideTtl(InvalidInput):
    """Entity rows have no feature row within the TTL before their time (or none at all)."""

    def __init__(self, service: str, count: int, total: int, example: str) -> None:
        super().__init__(
            f"{count} of {total} entity rows have no feature row within the TTL of "
            f"{service!r} before their event time (e.g. {example}); materialize or backfill "
            "the feature data, move the window, or ask for missing='nan' to get NaN features"
        )


class FeatureRepoInvalid(ConfigurationError):
    """The feature repository (feature_repo/) is missing or malformed: the message names the fix."""


class FeatureDefinitionRefused(FeatureRepoInvalid):
    """A definition in feature_repo/ Feast or the offline engine cannot use: fix it, apply again.

    A 422 rather than the 500 of other configuration errors: the API refuses the repository's
    content, which the caller can fix, and applies nothing.
    """

    http_status = 422

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "feature repository refused, nothing applied: " + "; ".join(problems)
            if len(problems) == 1
            else f"feature repository refused ({len(problems)} problems), nothing applied: "
            + "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        )
        self.problems = problems


class StaleFeatures(InvalidInput):
    """Features are missing or older than their view's TTL at request time (`reject` policy).

    422: the request is well formed, but the features it needs are not fresh enough to answer.
    """

    http_status = 422

    def __init__(self, model: str, problems: list[str]) -> None:
        shown = "; ".join(problems[:5]) + (
            f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
        )
        super().__init__(
            f"model {model!r} needs fresh features: {shown}; push or materialize newer rows, "
            "send the features with the request, or set `stale_features: missing` in the model "
            "spec to pass them to the model as missing (NaN)"
        )
        self.problems = problems
