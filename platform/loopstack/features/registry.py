"""Look up Feast registry objects by name, turning Feast's errors into Loopstack ones."""

from __future__ import annotations

from feast import FeatureService, FeatureStore, FileSource
from feast.errors import DataSourceObjectNotFoundException, FeatureServiceNotFoundException
from feast.types import FeastType

from loopstack.features.errors import FeatureRepoInvalid, UnknownFeatureService, UnknownFeatureView

__all__ = ["LABEL_SOURCE_TAG", "feature_service", "label_source", "service_features"]

LABEL_SOURCE_TAG = "loopstack.label_source"
"""FeatureService tag naming the FileSource of the model's label rows."""


def feature_service(store: FeatureStore, name: str) -> FeatureService:
    """The registered FeatureService `name`, or UnknownFeatureService listing the known ones."""
    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException:
        known = [s.name for s in store.list_feature_services()]
        raise UnknownFeatureService(name, known) from None


def label_source(store: FeatureStore, service: FeatureService) -> FileSource:
    """The FileSource of label rows named by the service's `loopstack.label_source` tag."""
    name = service.tags.get(LABEL_SOURCE_TAG)
    if not name:
        raise FeatureRepoInvalid(
            f"feature service {service.name!r} has no {LABEL_SOURCE_TAG!r} tag; "
            "tag it with the name of the FileSource holding the model's label rows"
        )
    try:
        source = store.get_data_source(name)
    except DataSourceObjectNotFoundException:
        known = [s.name for s in store.list_data_sources()]
        raise UnknownFeatureView("data source", name, known) from None
    if not isinstance(source, FileSource):
        raise FeatureRepoInvalid(
            f"label source {name!r} is a {type(source).__name__}; define it as a FileSource"
        )
    return source


def service_features(service: FeatureService) -> dict[str, FeastType]:
    """Output column name → Feast type of every feature the service serves, in order."""
    out: dict[str, FeastType] = {}
    for projection in service.feature_view_projections:
        for field in projection.features:
            if field.name in out:
                raise FeatureRepoInvalid(
                    f"feature service {service.name!r} serves two features named "
                    f"{field.name!r}; rename one of them"
                )
            out[field.name] = field.dtype
    return out
