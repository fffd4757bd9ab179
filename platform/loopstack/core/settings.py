"""Typed configuration: one `Settings`, loaded once at each entry point and passed down.

Sources, highest first: keyword arguments, `LOOPSTACK_*` environment variables (nested fields
with `__`, e.g. `LOOPSTACK_MLFLOW__PORT`), the YAML file named by `LOOPSTACK_CONFIG`
(default `loopstack.yaml` in the working directory, if present), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from loopstack.core.errors import ConfigurationError
from loopstack.core.tls import ClientTLS, ServerTLS, check_files

__all__ = [
    "ApiSettings",
    "AuthSettings",
    "EventsSettings",
    "FeaturesSettings",
    "KubernetesSettings",
    "MlflowSettings",
    "ServingSettings",
    "Settings",
    "TlsSettings",
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
    """URL clients (the CLI) use to reach the API; default `http://{host}:{port}` (`https` with TLS)."""
    token: str | None = None
    """Bearer token the CLI sends to the API (secret: read from the environment)."""
    request_deadline_s: float = Field(20.0, gt=0)
    """How long a deploy, promote, rollback or retrain may work: no step starts after it (the
    request answers 503), so nothing is applied once the caller stopped waiting (the SDK waits
    30 s)."""
    idempotency_ttl_s: float = Field(86_400.0, gt=0)
    """How long the outcome of a mutating request sent with an `Idempotency-Key` is kept: a retry
    with the same key within it gets the first answer instead of applying again."""
    idempotency_store_url: str | None = None
    """SQLAlchemy URL of those outcomes; default SQLite under the state dir (share one database
    between API replicas)."""


class AuthSettings(_Section):
    """Authentication and roles (API keys stored hashed, OIDC JWTs)."""

    enabled: bool = False
    """Require a bearer token with a role on the management API (off: loopback-only embedded use)."""
    inference: bool = False
    """Also require one (role `app`, `deployer` or `admin`) on inference, REST and gRPC."""
    store_url: str | None = None
    """SQLAlchemy URL of the API keys; default SQLite under the state dir."""
    jwks_url: str | None = None
    """JWKS URL of the OIDC issuer whose JWTs are accepted (none: API keys only)."""
    jwt_issuer: str | None = None
    """Required `iss` of accepted JWTs."""
    jwt_audience: str | None = None
    """Required `aud` of accepted JWTs."""
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    """Signature algorithms accepted (never `none` or HMAC: the keys are public)."""
    roles_claim: str = "roles"
    """JWT claim listing the caller's Loopstack roles."""


class TlsSettings(_Section):
    """TLS of the servers Loopstack implements (management API, inference REST and gRPC) and
    what their clients (CLI, SDK, the stack's health checks) trust and present; the other
    servers (MLflow, detector server, metrics) have none."""

    cert_file: Path | None = None
    """PEM certificate (chain) the management API and the inference server (REST and gRPC)
    present; set with `key_file`, they serve HTTPS and gRPC over TLS only."""
    key_file: Path | None = None
    """PEM private key of `cert_file` (unencrypted: protect the file, or mount it from a Secret)."""
    client_ca_file: Path | None = None
    """PEM CA bundle of mutual TLS: clients must present a certificate it signed, others are refused."""
    ca_file: Path | None = None
    """PEM CA bundle the CLI, SDK and health checks trust for those servers; default certifi's."""
    client_cert_file: Path | None = None
    """PEM certificate the CLI, SDK and health checks present to servers that require one."""
    client_key_file: Path | None = None
    """PEM private key of `client_cert_file`."""


class MlflowSettings(_Section):
    """The MLflow tracking server and model registry."""

    port: int = 8701
    """TCP port of the embedded MLflow server."""
    tracking_uri: str | None = None
    """Use an external MLflow server instead of the embedded one."""
    start_timeout_s: float = 180.0
    """How long `loopstack up` waits for MLflow to answer `/health` (first start migrates)."""
    request_timeout_s: int = Field(3, ge=1)
    """Seconds one call of Loopstack's processes to MLflow may wait for a connection or an answer
    (MLflow's `MLFLOW_HTTP_REQUEST_TIMEOUT`, set from this)."""
    request_max_retries: int = Field(0, ge=0)
    """Retries of a failed MLflow call (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`); MLflow's own default
    of 7 with back-off made a caller wait about 4 minutes."""
    request_backoff_factor: int = Field(1, ge=0)
    """Back-off factor between those retries (`MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`)."""
    background_request_timeout_s: int = Field(60, ge=1)
    """The same for work nobody waits on (pipeline steps uploading artifacts, the loop
    controller's promotions and rollbacks): it waits out a busy MLflow rather than fail; the
    management API and the runner itself still fail fast."""
    background_request_max_retries: int = Field(3, ge=0)
    """Retries of a failed MLflow call from that background work."""


class FeaturesSettings(_Section):
    """The Feast feature store."""

    online_store: Literal["sqlite", "redis"] = "sqlite"
    """Online store: SQLite file (embedded) or Redis (scale)."""
    offline_store: Literal["duckdb", "file"] = "duckdb"
    """Feast's engine over the repo's parquet files: DuckDB (an as-of join) or Dask (`file`, slower)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis connection string when `online_store` is `redis`."""
    request_timeout_s: float = Field(3.0, gt=0)
    """Seconds a call to the Redis online store may wait for a connection or an answer (the SQLite
    online store waits at most Python's 5 s for a lock)."""


class InputLimits(_Section):
    """Bounds on one inference request; beyond them it is refused with the limit named."""

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Request body (REST) or message (gRPC) size; larger is 413 / RESOURCE_EXHAUSTED."""
    max_rows: int = Field(10_000, ge=1)
    """Rows (instances, tensor rows) in one request."""
    max_fields: int = Field(1_024, ge=1)
    """Fields (v1 keys, v2 input tensors, matrix columns) in one request."""
    max_tensor_elements: int = Field(1_000_000, ge=1)
    """Values in one request, all tensors together."""
    max_string_chars: int = Field(4_096, ge=1)
    """Characters of one string value (a category, a BYTES element, a field name, a parameter)."""
    event_string_chars: int = Field(256, ge=8)
    """Characters of a string value kept in a prediction event; longer ones are cut and marked
    `…[+N chars]` (the answer is unaffected). Bounds what every consumer of the log must hold."""


class ServingSettings(_Section):
    """The KServe model runtime."""

    rest_port: int = 8780
    """HTTP port of the embedded inference server (KServe v1 and v2 REST)."""
    grpc_port: int = 8781
    """gRPC port of the embedded inference server (Open Inference Protocol v2)."""
    traffic_poll_s: float = Field(0.5, gt=0, le=60)
    """How often the inference server checks the traffic split revisions (off the request path)."""
    ready_timeout_s: float = Field(300.0, gt=0)
    """How long `loopstack up` waits for the inference server to load every deployed version (`/v2/health/ready`); then it fails naming the model and leaves the stack running."""
    event_queue_max: int = Field(100_000, ge=100)
    """Prediction events waiting for the outbox; beyond it an answer is refused (503, durable
    answers), or its events are dropped and counted (answers not durable, shadow mirrors)."""
    shadow_queue_max: int = Field(1_000, ge=1)
    """Shadow requests waiting for the challenger; beyond it mirrors are skipped and counted."""
    model_threads: int = Field(1, ge=1)
    """OpenMP/BLAS threads a model may use per call; 1 suits small requests (fan-out costs more)."""
    max_batch_rows: int = Field(256, ge=1)
    """Rows one model call may score: requests queued while a version is busy are scored together
    (adaptive batching; nobody waits for a batch to fill); 1 scores every request alone."""
    request_logging: bool = False
    """KServe's per-request log lines (access log, timing); off: prediction events are the record."""
    async_inference: bool = True
    """Also consume `inference.request.v1` events and answer with `inference.result.v1`."""
    ingest_pair_timeout_s: float = Field(5.0, gt=0)
    """How long a KServe logger request waits for its response (and vice versa) before it is logged alone."""
    ingest_url: str | None = None
    """URL InferenceServices' loggers post to; default the in-cluster Loopstack runtime service."""
    accept_request_time: bool = False
    """Take a request's `request_time` parameter as its time (replays of history, e.g. the demo)."""
    explain_top_k: int = Field(5, ge=1, le=100)
    """Feature contributions an `explain=true` answer lists per prediction (largest first)."""
    explain_background_rows: int = Field(50, ge=1, le=1000)
    """Background rows (of the version's reference sample) SHAP masks with; cost grows with it."""
    explain_max_evals: int = Field(256, ge=1)
    """Model evaluations SHAP spends per explained row: exact if 2^fields fit, else permutations."""
    explain_warmup: bool = False
    """Load SHAP in the background at start (~10 s of CPU) so the first `explain=true` request
    does not wait for it; off: that request pays it."""
    limits: InputLimits = Field(default_factory=InputLimits)
    """What one inference request may hold; checked before any work (REST, gRPC, async, ingest)."""
    durable_answers: bool = True
    """Answer only once the request's prediction event is in the process's outbox file (group
    committed with concurrent requests): an answered prediction survives a SIGKILL of the server."""


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


class DriftSettings(_Section):
    """The drift consumer and the detector server (drift runtime)."""

    detector_port: int = 8710
    """HTTP port of the embedded detector server."""
    detector_url: str | None = None
    """Use an external detector server instead of the embedded one."""
    python: Path | None = None
    """Interpreter of the drift runtime; default the checkout's `platform/drift-runtime/.venv`
    (`make drift-env`), else the per-user one `loopstack drift-runtime install` sets up
    (`$XDG_DATA_HOME/loopstack/drift-runtime-<version>/`; `loopstack up` installs it if missing)."""
    store_url: str | None = None
    """SQLAlchemy URL of the drift consumer's store (windows, results, processed ids); default
    SQLite under the state dir (PostgreSQL at scale)."""
    group: str = "drift"
    """Consumer group of the drift consumer (its processed-event ids live in its store)."""
    metrics_port: int = 8711
    """HTTP port where the drift consumer serves `/metrics` (`loopstack_drift_*` gauges)."""
    sweep_interval_s: float = Field(default=5.0, gt=0)
    """How often the drift consumer closes idle windows and retries windows waiting to be scored."""
    category_max_chars: int = Field(default=64, ge=32)
    """A string value longer than this is kept in a window (and a reference) as
    `sha256:<16 hex>` of its UTF-8: equal values stay one category, a 10 MB value costs 23 chars."""
    max_categories: int = Field(default=200, ge=2)
    """Distinct values per categorical feature: a reference's rarest past this are folded into
    `<other>`, and so are a window's unseen ones past this many."""
    max_window_rows: int = Field(default=10_000, ge=1)
    """A window closes at this many rows even if the spec's `window_size` is larger."""
    max_reference_rows: int = Field(default=50_000, ge=1)
    """A larger drift reference is fitted on a seeded random sample of this many rows."""
    max_row_bytes: int = Field(default=32_768, ge=1_024)
    """A prediction row longer than this as stored JSON (after long strings became digests) is
    left out of drift windows (counted as `too_wide`): a window holds at most
    `max_window_rows` x this."""
    max_score_attempts: int = Field(default=3, ge=1)
    """A window whose scoring fails this many times in a row after reaching the detector server
    (an error answer, the connection lost mid-request, a timeout) is recorded as failed with
    the reason and not retried; a server that cannot be reached is waited for with back-off."""
    retry_backoff_max_s: float = Field(default=300.0, gt=0)
    """Longest wait between two attempts at a version's waiting window (doubling from the sweep
    interval)."""


class FeedbackSettings(_Section):
    """The feedback consumer and its read model (joined predictions and outcomes, live quality)."""

    read_model_url: str | None = None
    """SQLAlchemy URL of the read model; default SQLite under the state dir (PostgreSQL at scale)."""
    group: str = "feedback"
    """Consumer group of the feedback consumer (its processed-event ids live in the read model)."""
    metrics_port: int = 8720
    """HTTP port where the feedback consumer serves `/metrics` (`loopstack_quality_*` gauges)."""
    entity_time_tolerance_s: float = Field(default=300.0, ge=0)
    """An outcome sent by entity key + event time joins the prediction whose request time is
    nearest its event time and at most this far away."""
    default_join_window_s: float = Field(default=7 * 24 * 3600, gt=0)
    """How long an outcome naming no known model waits for its prediction (else the spec's)."""
    sweep_interval_s: float = Field(default=5.0, gt=0)
    """How often the consumer dead-letters expired orphans, publishes alerts and pushes features."""
    alert_metrics: list[str] = Field(default_factory=list)
    """Metrics alerted on besides each model's gate metric (e.g. `mae`, `calibration_error`)."""
    push_sources: dict[str, str] = Field(
        default_factory=lambda: {"bike-demand": "city_demand_push"}
    )
    """Model -> Feast push source that outcomes refresh (hourly lag features; {} turns it off)."""
    max_batch: int = Field(default=10_000, ge=1)
    """Outcomes one `POST /v1/feedback` may carry."""
    max_outcome_abs: float = Field(default=1e15, gt=0, le=1e100)
    """Largest magnitude of a numeric outcome: intake refuses more (422) and the consumer
    dead-letters it. At most 1e100, so squared errors of a window can never overflow."""
    intake_wait_s: float = Field(default=2.0, ge=0)
    """How long intake waits for the consumer to store an outcome's prediction (sent by id, its
    model unknown yet) to check the outcome against that model's task; after that it is checked
    as any model's outcome and again at the join."""


class LoopSettings(_Section):
    """The loop controller: retraining triggers, rollouts (shadow, canary, promote/roll back)."""

    store_url: str | None = None
    """SQLAlchemy URL of the loop's state and decision history; default SQLite under the state dir."""
    group: str = "loop"
    """Consumer group of the loop controller (drift, quality and decision events)."""
    metrics_port: int = 8730
    """HTTP port where the loop controller serves `/metrics` (`loopstack_loop_*`)."""
    tick_s: float = Field(default=2.0, gt=0)
    """How often the controller checks running pipelines and rollouts."""
    pipeline: str = "train"
    """Pipeline a trigger runs (with `model`, `start`, `end`)."""
    models: list[str] | None = None
    """Models the loop controls (retrains, rolls out); None: every model with a spec."""


class PipelinesSettings(_Section):
    """The embedded pipeline runner."""

    parallelism: int = Field(2, ge=1)
    """Steps (and sweep branches) the embedded runner runs at once."""
    retry_backoff_s: float = Field(1.0, ge=0)
    """First back-off before retrying a failed step; doubles on each retry."""
    cache: bool = True
    """Reuse a step's outputs when its code, parameters and inputs are unchanged."""
    fork_server: bool = True
    """Import the heavy libraries once and fork each step's process from that worker."""
    fork_socket: str | None = None
    """Socket of a warm fork server to use (the embedded backend sets it for its runners)."""


class KubernetesSettings(_Section):
    """The Kubernetes backend."""

    namespace: str = "loopstack"
    """Namespace for InferenceServices and Workflows."""
    crds_dir: Path = Path("../shared/crds")
    """Folder of upstream CRD YAML files the test suite validates rendered manifests against
    (relative to project_dir); nothing else reads it, and those checks skip without it."""
    image: str = "ghcr.io/loopstack/loopstack:0.1.0"
    """Platform image: management API, consumers, pipeline steps and the model runtime."""
    drift_image: str = "ghcr.io/loopstack/drift-runtime:0.1.0"
    """Drift runtime image: the detector server."""
    run_volume_size: str = "2Gi"
    """Size of the volume a pipeline run's steps share (their files)."""
    run_volume_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"
    """Access mode of that volume; ReadWriteMany lets sweep branches run on several nodes."""


class Settings(BaseSettings):
    """Every setting of Loopstack, with its default."""

    model_config = SettingsConfigDict(
        env_prefix="LOOPSTACK_",
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
    )

    project_dir: Path = Path(".")
    """Project root holding `models/`, `feature_repo/` and optionally `pipelines/`
    (`loopstack init DIR` scaffolds one)."""
    state_dir: Path = Path(".loopstack")
    """Where the embedded stack keeps pid files, logs and data (relative to project_dir)."""
    backend: Literal["embedded", "kubernetes"] = "embedded"
    """Where models are served and pipelines run: local processes or a Kubernetes cluster."""
    host: str = "127.0.0.1"
    """Interface the embedded servers bind; loopback unless you mean to expose them."""
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    pipelines: PipelinesSettings = Field(default_factory=PipelinesSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
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

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        """TLS files are usable as configured, or loading fails naming the setting and the fix."""
        files = {
            f"LOOPSTACK_TLS__{name.upper()}": None if path is None else self.resolve(path)
            for name, path in self.tls
        }
        problems = check_files(
            files,
            pairs=[
                ("LOOPSTACK_TLS__CERT_FILE", "LOOPSTACK_TLS__KEY_FILE"),
                ("LOOPSTACK_TLS__CLIENT_CERT_FILE", "LOOPSTACK_TLS__CLIENT_KEY_FILE"),
            ],
            cas=["LOOPSTACK_TLS__CLIENT_CA_FILE", "LOOPSTACK_TLS__CA_FILE"],
        )
        if self.tls.client_ca_file is not None and self.tls.cert_file is None:
            problems.append(
                "LOOPSTACK_TLS__CLIENT_CA_FILE (mutual TLS) needs a server certificate: set "
                "LOOPSTACK_TLS__CERT_FILE and LOOPSTACK_TLS__KEY_FILE too"
            )
        if problems:
            # Not a ValueError: pydantic would bury the fix in its own wording.
            raise ConfigurationError("invalid TLS configuration: " + "; ".join(problems))
        return self

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
        """Folder of the project's own pipeline definitions (optional: they add to, or override
        by name, the built-in `train` and `batch-score` the package ships)."""
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
    def server_tls(self) -> ServerTLS | None:
        """What the management API and the inference server present (None: plain HTTP)."""
        if self.tls.cert_file is None or self.tls.key_file is None:
            return None
        ca = self.tls.client_ca_file
        return ServerTLS(
            self.resolve(self.tls.cert_file),
            self.resolve(self.tls.key_file),
            None if ca is None else self.resolve(ca),
        )

    @property
    def client_tls(self) -> ClientTLS:
        """What the CLI, the SDK and the stack's health checks trust and present."""
        tls = self.tls
        return ClientTLS(
            *(
                None if p is None else self.resolve(p)
                for p in (tls.ca_file, tls.client_cert_file, tls.client_key_file)
            )
        )

    def server_url(self, port: int) -> str:
        """URL of a server Loopstack implements on `host:port`: `https` when TLS is on."""
        scheme = "https" if self.server_tls is not None else "http"
        return f"{scheme}://{self.host}:{port}"

    @property
    def api_url(self) -> str:
        """URL of the management API."""
        return self.api.url or self.server_url(self.api.port)

    @property
    def mlflow_tracking_uri(self) -> str:
        """Tracking URI of MLflow: the configured one or the embedded server's."""
        return self.mlflow.tracking_uri or f"http://{self.host}:{self.mlflow.port}"

    def state_sqlite_url(self, folder: str, file: str) -> str:
        """`sqlite:///<state dir>/<folder>/<file>` (the folder created): a store's embedded default."""
        path = self.state_path / folder
        path.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path / file}"

    def as_env(self) -> dict[str, str]:
        """These settings as `LOOPSTACK_*` variables, so a child process loads the same ones."""
        env = {}
        for name, value in self:
            if isinstance(value, BaseModel):
                env[f"LOOPSTACK_{name.upper()}"] = value.model_dump_json()
            elif isinstance(value, Path):
                env[f"LOOPSTACK_{name.upper()}"] = str(self.resolve(value))
            else:
                env[f"LOOPSTACK_{name.upper()}"] = str(value)
        return env


def load_settings(**overrides: Any) -> Settings:
    """Load settings once, at an entry point; pass the result down."""
    return Settings(**overrides)
