"""Open the Feast store for the settings; apply the repository; materialize to the online store.

The Feast configuration is built in code: `feature_repo/feature_store.yaml` gives the project,
provider and serialization version, and Settings decide the offline engine and where the
registry and the online store live (the state dir, never the repository).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from feast import FeatureStore, FileSource, RepoConfig
from feast.diff.property_diff import TransitionType
from feast.diff.registry_diff import RegistryDiff
from feast.feature_view import DUMMY_ENTITY, DUMMY_ENTITY_NAME
from feast.repo_contents import RepoContents
from feast.repo_operations import extract_objects_for_apply_delete
from google.protobuf.message import Message

from loopstack.core.settings import FeaturesSettings, Settings
from loopstack.features.errors import FeatureDefinitionRefused, FeatureRepoInvalid, InvalidWindow
from loopstack.features.offline import seed_datasets
from loopstack.features.repo import Origins, load_repo
from loopstack.features.validation import check_definitions

__all__ = [
    "ApplyPlan",
    "Change",
    "apply",
    "apply_repo",
    "as_utc",
    "feast_dir",
    "materialize",
    "open_store",
    "redis_connection_string",
    "repo_config",
]

log = logging.getLogger(__name__)

STORE_YAML = "feature_store.yaml"
# Keys of feature_store.yaml the code path keeps; the rest come from Settings.
_KEPT_KEYS = ("project", "provider", "entity_key_serialization_version")


def feast_dir(settings: Settings) -> Path:
    """Folder of the Feast registry and SQLite online store: `<state dir>/feast`."""
    return settings.state_path / "feast"


def redis_connection_string(url: str, timeout_s: float | None = None) -> str:
    """Turn `redis://[:password@]host:port/db` into Feast's `host:port,db=N,...` form; with
    `timeout_s`, connecting and every command give up after it (a hung Redis is an error, not a
    wait)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise FeatureRepoInvalid(
            f"features.redis_url {url!r} is not a redis:// or rediss:// URL; "
            "set LOOPSTACK_FEATURES__REDIS_URL to e.g. redis://127.0.0.1:6379/0"
        )
    options = [f"{parts.hostname}:{parts.port or 6379}"]
    db = parts.path.strip("/")
    if db:
        options.append(f"db={db}")
    if parts.password:
        options.append(f"password={unquote(parts.password)}")
    if parts.scheme == "rediss":
        options.append("ssl=true")
    if timeout_s is not None:
        options += [f"socket_timeout={timeout_s}", f"socket_connect_timeout={timeout_s}"]
    return ",".join(options)


def _online_store(features: FeaturesSettings, folder: Path) -> dict[str, Any]:
    if features.online_store == "redis":
        return {"type": "redis", "connection_string": redis_connection_string(
            features.redis_url, features.request_timeout_s)}  # fmt: skip
    return {"type": "sqlite", "path": str(folder / "online.db")}


def repo_config(settings: Settings) -> RepoConfig:
    """Build the Feast RepoConfig for these settings (registry, online store in the state dir)."""
    repo_dir = settings.feature_repo_dir
    path = repo_dir / STORE_YAML
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FeatureRepoInvalid(
            f"cannot read {path}: {exc}; set project_dir to the Loopstack project root"
        ) from exc
    folder = feast_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    base = {key: raw[key] for key in _KEPT_KEYS if key in raw}
    return RepoConfig(
        **{"provider": "local", **base, "offline_store": {"type": settings.features.offline_store}},
        registry={"registry_type": "file", "path": str(folder / "registry.db")},
        online_store=_online_store(settings.features, folder),
        repo_path=repo_dir,
    )


def open_store(settings: Settings) -> FeatureStore:
    """Open the Feast FeatureStore these settings describe."""
    return FeatureStore(config=repo_config(settings))


@dataclass(frozen=True)
class Change:
    """One registry object the apply adds, changes or removes."""

    action: str
    """`add`, `change` or `remove`."""
    kind: str
    """Feast's object type: `entity`, `feature view`, `feature service`, `data source`, ..."""
    name: str
    properties: list[str] = field(default_factory=list)
    """Changed properties of a `change` (e.g. `ttl`), as Feast's diff names them."""


@dataclass(frozen=True)
class ApplyPlan:
    """What `features apply` changes in the registry, and whether it did."""

    repo: str
    changes: list[Change]
    applied: bool
    """False for a dry run (nothing written)."""


def apply(settings: Settings, store: FeatureStore | None = None) -> FeatureStore:
    """Register `feature_repo/` in the registry and create online tables, like `feast apply`.

    The same checks and path rewriting as `apply_repo` (which also reports the plan).
    """
    store = store or open_store(settings)
    apply_repo(settings, store)
    return store


def apply_repo(
    settings: Settings, store: FeatureStore | None = None, dry_run: bool = False
) -> ApplyPlan:
    """Validate `feature_repo/`, compute what changes in the registry, and (unless a dry run)
    apply it, like `feast plan` + `feast apply` with Loopstack's file paths.

    Objects in the registry that the repository no longer defines are deleted, as Feast does.
    Label sources and the batch sources of push sources are registered at their datasets in
    the state dir, seeded from the repository files (`loopstack.features.offline`); a dry run
    writes no seed.

    Raises:
        FeatureDefinitionRefused: a definition Feast or the offline engine cannot use (the
            message names the file, the object and the fix); nothing is applied.
    """
    store = store or open_store(settings)
    origins: Origins = {}
    contents = load_repo(settings.feature_repo_dir, origins)
    check_definitions(contents, origins, settings.features.offline_store)
    _absolute_paths(contents, settings.feature_repo_dir)
    # Label and push sources read (and the feedback consumer writes) state-dir datasets.
    seed_datasets(contents, feast_dir(settings), write=not dry_run)
    contents.entities.append(DUMMY_ENTITY)  # Feast registers it for entity-less views
    try:
        diff, _, _ = store.plan(contents)
    except (ValueError, TypeError, KeyError) as exc:  # Feast's own validation and inference
        raise FeatureDefinitionRefused([f"Feast rejects the repository: {exc}"]) from exc
    plan = ApplyPlan(str(settings.feature_repo_dir), _changes(diff), applied=not dry_run)
    if dry_run:
        return plan
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
        store.project, store.registry, contents
    )
    # Standalone data sources (the label sources) are not in Feast's diff: apply them too.
    objects = [*to_apply, *contents.data_sources]
    store.apply(objects, objects_to_delete=to_delete, partial=False)
    log.info("feast apply: %d objects applied, %d deleted", len(objects), len(to_delete))
    return plan


_ACTIONS = {
    TransitionType.CREATE: "add",
    TransitionType.UPDATE: "change",
    TransitionType.DELETE: "remove",
}


def _changes(diff: RegistryDiff) -> list[Change]:
    out = []
    for item in diff.feast_object_diffs:
        action = _ACTIONS.get(item.transition_type)
        kind = str(getattr(item.feast_object_type, "value", item.feast_object_type)).lower()
        # The project object is Feast's bookkeeping, not a definition of the repository.
        if action is None or item.name == DUMMY_ENTITY_NAME or kind == "project":
            continue
        properties = sorted(
            {
                p.property_name
                for p in item.feast_object_property_diffs
                if _differs(p.val_existing, p.val_declared)
            }
        )
        if action == "change" and not properties:
            continue
        out.append(Change(action, kind.replace("_", " "), item.name, properties))
    return out


def _differs(existing: Any, declared: Any) -> bool:
    """Whether a property really changed: Feast compares embedded data sources with their
    registry timestamps (`meta`), so every apply would otherwise "change" a push source's view."""
    if isinstance(existing, Message) and isinstance(declared, Message):
        return _bare(existing) != _bare(declared)
    return bool(existing != declared)


def _bare(message: Message) -> bytes:
    copy = type(message)()
    copy.CopyFrom(message)
    _clear_meta(copy)
    return copy.SerializeToString(deterministic=True)


def _clear_meta(message: Message) -> None:
    for descriptor, value in message.ListFields():
        if descriptor.name == "meta":
            message.ClearField("meta")
        elif descriptor.message_type is not None and not descriptor.is_repeated:
            _clear_meta(value)


def _absolute_paths(contents: RepoContents, repo_dir: Path) -> None:
    """Anchor relative FileSource paths at the repo: the DuckDB store reads them from the cwd."""
    sources = [*contents.data_sources, *(v.batch_source for v in contents.feature_views)]
    for source in sources:
        batch = getattr(source, "batch_source", None)  # a PushSource's offline half
        for file in (source, batch):
            if isinstance(file, FileSource) and "://" not in file.path:
                file.file_options.uri = str((repo_dir / file.path).resolve())


def as_utc(moment: datetime) -> datetime:
    """Make a datetime timezone-aware in UTC; naive datetimes are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def materialize(
    settings: Settings,
    start: datetime,
    end: datetime,
    views: list[str] | None = None,
    store: FeatureStore | None = None,
) -> FeatureStore:
    """Load feature rows with event times in [start, end] into the online store."""
    start, end = as_utc(start), as_utc(end)
    if start >= end:
        raise InvalidWindow(start, end)
    store = store or open_store(settings)
    store.materialize(start_date=start, end_date=end, feature_views=views)
    return store
