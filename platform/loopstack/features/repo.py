"""Load the Feast object definitions of `feature_repo/` without changing directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from feast import Entity, FeatureService, FeatureView
from feast.data_source import DataSource, PushSource
from feast.repo_contents import RepoContents

from loopstack.features.errors import FeatureDefinitionRefused, FeatureRepoInvalid

__all__ = ["Origins", "definition_files", "kind_of", "load_repo"]

Origins = dict[tuple[str, str], Path]
"""(kind, name) -> the file that defines the object, for messages that name the file to fix."""

# Same exclusions as `.feastignore`: the data folder holds scripts, not definitions.
_IGNORED_DIRS = {"data", "__pycache__", ".ipynb_checkpoints"}


def definition_files(repo_dir: Path) -> list[Path]:
    """The Python files of the repository that define Feast objects, in a stable order."""
    if not (repo_dir / "feature_store.yaml").is_file():
        raise FeatureRepoInvalid(
            f"{repo_dir} has no feature_store.yaml; set project_dir to the Loopstack project root"
        )
    return sorted(
        p
        for p in repo_dir.rglob("*.py")
        if p.name != "__init__.py" and not _IGNORED_DIRS & set(p.relative_to(repo_dir).parts[:-1])
    )


def _import(path: Path, repo_dir: Path) -> ModuleType:
    # A private module name: definitions must not shadow or be shadowed by installed modules.
    name = "loopstack_feature_repo." + ".".join(path.relative_to(repo_dir).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FeatureRepoInvalid(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any error in user definitions is a repo error, shown whole
        raise FeatureDefinitionRefused(
            [f"{path} failed to import: {exc!r}; fix the definition"]
        ) from exc
    return module


def load_repo(repo_dir: Path, origins: Origins | None = None) -> RepoContents:
    """Collect entities, data sources, feature views and feature services, like `feast apply`.

    `origins`, when given, is filled with the file of each object (first definition wins).
    """
    contents = RepoContents(
        projects=[],
        data_sources=[],
        feature_views=[],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=[],
        feature_services=[],
        permissions=[],
    )

    def add(bucket: list[Any], obj: object) -> None:
        if not any(o is obj for o in bucket):
            bucket.append(obj)
        if origins is not None:
            origins.setdefault((kind_of(obj), str(getattr(obj, "name", ""))), path)

    for path in definition_files(repo_dir):
        module = _import(path, repo_dir)
        for obj in vars(module).values():
            if isinstance(obj, DataSource):
                add(contents.data_sources, obj)
                if isinstance(obj, PushSource) and obj.batch_source is not None:
                    add(contents.data_sources, obj.batch_source)
            elif isinstance(obj, FeatureView):
                add(contents.feature_views, obj)
                for source in (obj.batch_source, obj.stream_source):
                    if source is not None:
                        add(contents.data_sources, source)
            elif isinstance(obj, Entity):
                add(contents.entities, obj)
            elif isinstance(obj, FeatureService):
                add(contents.feature_services, obj)
    names = [fv.name for fv in contents.feature_views]
    if len(names) != len(set(names)):
        raise FeatureRepoInvalid(f"{repo_dir}: two feature views share a name: {sorted(names)}")
    return contents


def kind_of(obj: object) -> str:
    """How messages name a Feast object's kind: `feature view`, `data source`, ..."""
    for kind, cls in (
        ("feature view", FeatureView),
        ("feature service", FeatureService),
        ("entity", Entity),
        ("data source", DataSource),
    ):
        if isinstance(obj, cls):
            return kind
    return type(obj).__name__
