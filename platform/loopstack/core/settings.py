"""Typed configuration: one `Settings`, loaded once at each entry point and passed down.

Sources, highest first: keyword arguments, `LOOPSTACK_*` environment variables (nested fields
with `__`, e.g. `LOOPSTACK_MLFLOW__PORT`), the YAML file named by `LOOPSTACK_CONFIG`
(default `loopstack.yaml` in the working directory, if present), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = [
    "ApiSettings",
    "EventsSettings",
    "FeaturesSettings",
    "KubernetesSettings",
    "MlflowSettings",
    "ServingSettings",
    "Settings",
    "load_settings",
]

CONFIG_FILE_ENV = "LOOPSTACK_CONFIG"
DEFAULT_CONFIG_FILE = "loopstack.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class ApiSettings(_Section):
    """The management API (FastAPI)."""

    port: int = 8700
    """TCP port of the management API."""
    url: str | None = None
    """URL clients (the CLI) use to reach the API; default `http://{host}:{port}`."""
    token: str | None = None
    """Bearer token the CLI sends to the API (secret: read from the environment)."""


class MlflowSettings(_Section):
    """The MLflow tracking server and model registry."""

    port: int = 8701
    """TCP port of the embedded MLflow server."""
    tracking_uri: str | None = None
    """Use an external MLflow server instead of the embedded one."""
    start_timeout_s: float = 180.0
    """How long `loopstack up` waits for MLflow to answer `/health` (first start migrates)."""


class FeaturesSettings(_Section):
    """The Feast feature store."""

    online_store: Literal["sqlite", "redis"] = "sqlite"
    """Online store: SQLite file (embedded) or Redis (scale)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis connection string when `online_store` is `redis`."""


class ServingSettings(_Section):
    """The KServe model runtime."""

    rest_port: int = 8780
    """HTTP port of the embedded inference server (KServe v1 and v2 REST)."""
    grpc_port: int = 8781
    """gRPC port of the embedded inference server (Open Inference Protocol v2)."""


class EventsSettings(_Section):
    """The event log every component publishes to and consumes from."""

    backend: Literal["sqlite", "kafka"] = "sqlite"
    """`sqlite`: durable log in the state dir (one machine); `kafka`: a Kafka cluster."""
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    """Kafka bootstrap servers when `backend` is `kafka`."""
    kafka_config: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Extra librdkafka client settings (e.g. `security.protocol`); they override Loopstack's."""
    kafka_replication_factor: int = Field(default=1, ge=1)
    """Replication factor of topics Loopstack creates on Kafka (3 on a production cluster)."""
    kafka_delivery_timeout_ms: int = Field(default=300_000, ge=1_000)
    """How long the producer retries one event before the outbox sends it again (`message.timeout.ms`)."""
    sqlite_path: Path | None = None
    """SQLite event log file; default `<state_dir>/events/events.db`."""
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """SQLite fsync policy of the log and outbox: NORMAL survives process crashes, FULL power loss too."""
    sqlite_busy_timeout_ms: int = Field(default=5_000, ge=0)
    """How long an SQLite writer waits for a lock held by another process before retrying."""
    partitions: int = Field(default=4, ge=1, le=1024)
    """Partitions of each topic when Loopstack creates it (events with one partition key stay in order)."""
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
    """Events older than this are deleted from the log (Kafka `retention.ms`)."""
    retention_bytes: int | None = Field(default=None, ge=1_000_000)
    """Per-partition size cap of the SQLite log; the oldest events go first (None: no cap)."""
    group_session_timeout_ms: int = Field(default=10_000, ge=500)
    """A consumer silent this long loses its partitions to the others of its group."""
    group_heartbeat_interval_ms: int = Field(default=1_000, ge=50)
    """How often a consumer renews its group membership (well under the session timeout)."""
    outbox_dir: Path | None = None
    """Folder of the per-process publish outboxes; default `<state_dir>/events/outbox`."""
    outbox_max_events: int = Field(default=100_000, ge=1)
    """Events a process may hold unsent before `publish` raises `PublishQueueFull`."""
    batch_size: int = Field(default=500, ge=1, le=100_000)
    """Events the outbox sender and a consumer move per batch."""
    max_retries: int = Field(default=3, ge=0)
    """Times a consumer retries a failing handler on one event before dead-lettering it."""
    processed_retention_days: int = Field(default=30, ge=1)
    """How long a consumer store remembers processed event ids (keep above log retention + replays)."""
    otlp_endpoint: str | None = None
    """OTLP/HTTP traces endpoint (e.g. `http://127.0.0.1:4318/v1/traces`); None: no export."""


class KubernetesSettings(_Section):
    """The Kubernetes backend."""

    namespace: str = "loopstack"
    """Namespace for InferenceServices and Workflows."""
    crds_dir: Path = Path("../shared/crds")
    """Folder of upstream CRD YAML files manifests are validated against (relative to project_dir)."""
    runtime_image: str = "ghcr.io/loopstack/runtime:0.1.0"
    """Image of the Loopstack model runtime (ClusterServingRuntime)."""


class Settings(BaseSettings):
    """Every setting of Loopstack, with its default."""

    model_config = SettingsConfigDict(
        env_prefix="LOOPSTACK_",
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
    )

    project_dir: Path = Path(".")
    """Project root holding `models/`, `pipelines/` and `feature_repo/`."""
    state_dir: Path = Path(".loopstack")
    """Where the embedded stack keeps pid files, logs and data (relative to project_dir)."""
    backend: Literal["embedded", "kubernetes"] = "embedded"
    """Where models are served and pipelines run: local processes or a Kubernetes cluster."""
    host: str = "127.0.0.1"
    """Interface the embedded servers bind; loopback unless you mean to expose them."""
    api: ApiSettings = Field(default_factory=ApiSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: arguments, environment, YAML file, defaults."""
        config_file = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=config_file),
        )

    def resolve(self, path: Path) -> Path:
        """Resolve a configured path against `project_dir`."""
        return path if path.is_absolute() else (self.project_dir / path).resolve()

    @property
    def state_path(self) -> Path:
        """Absolute state directory."""
        return self.resolve(self.state_dir)

    @property
    def models_dir(self) -> Path:
        """Folder of model specs (`models/<name>/model.yaml`)."""
        return self.resolve(Path("models"))

    @property
    def pipelines_dir(self) -> Path:
        """Folder of pipeline definitions."""
        return self.resolve(Path("pipelines"))

    @property
    def feature_repo_dir(self) -> Path:
        """The Feast repository."""
        return self.resolve(Path("feature_repo"))

    @property
    def crds_path(self) -> Path:
        """Absolute folder of upstream CRDs."""
        return self.resolve(self.kubernetes.crds_dir)

    @property
    def api_url(self) -> str:
        """URL of the management API."""
        return self.api.url or f"http://{self.host}:{self.api.port}"

    @property
    def mlflow_tracking_uri(self) -> str:
        """Tracking URI of MLflow: the configured one or the embedded server's."""
        return self.mlflow.tracking_uri or f"http://{self.host}:{self.mlflow.port}"


def load_settings(**overrides: Any) -> Settings:
    """Load settings once, at an entry point; pass the result down."""
    return Settings(**overrides)
