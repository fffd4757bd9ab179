"""The API's composition root: every service built once from settings, lazily, and shared."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from loopstack.core.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

    from loopstack.api.idempotency import IdempotencyStore
    from loopstack.core.audit import AuditTrail
    from loopstack.core.auth.authenticator import Authenticator
    from loopstack.core.auth.keys import ApiKeyStore
    from loopstack.core.events.log.base import EventLog
    from loopstack.core.events.metrics import EventMetrics
    from loopstack.core.events.outbox import Publisher
    from loopstack.core.events.service import EventService
    from loopstack.loop.service import LoopService
    from loopstack.monitoring.drift.queries import DriftQueries
    from loopstack.monitoring.drift.store import DriftStore
    from loopstack.monitoring.feedback.service import FeedbackService
    from loopstack.monitoring.feedback.why import PredictionWhy
    from loopstack.pipelines.adoption import ModelAdoption
    from loopstack.registry.registry import ModelRegistry
    from loopstack.serving.backends.base import Backend
    from loopstack.serving.deployments import DeploymentService

__all__ = ["Services"]


class Services:
    """Shared service objects of one API process (built on first use, closed on shutdown)."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics_registry = registry if registry is not None else CollectorRegistry()

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        """Outcomes of mutating requests sent with an `Idempotency-Key`."""
        from loopstack.api.idempotency import IdempotencyStore

        url = self.settings.api.idempotency_store_url or self.settings.state_sqlite_url(
            "api", "idempotency.db"
        )
        return IdempotencyStore(url, self.settings.api.idempotency_ttl_s)

    @cached_property
    def api_keys(self) -> ApiKeyStore:
        """The API keys (hashed)."""
        from loopstack.core.auth.keys import ApiKeyStore, auth_store_url

        return ApiKeyStore(auth_store_url(self.settings))

    @cached_property
    def authenticator(self) -> Authenticator:
        """Bearer tokens to principals."""
        from loopstack.core.auth.authenticator import Authenticator

        return Authenticator(self.settings, self.api_keys)

    @cached_property
    def audit_trail(self) -> AuditTrail:
        """The audit read model (kept by the loop controller, in the loop's store)."""
        from loopstack.core.audit import AuditTrail
        from loopstack.loop.store import LoopStore

        return AuditTrail(LoopStore.from_settings(self.settings).engine)

    @cached_property
    def event_metrics(self) -> EventMetrics:
        """Event counters, exported on the API's `/metrics`."""
        from loopstack.core.events.metrics import EventMetrics

        return EventMetrics(self.metrics_registry)

    @cached_property
    def event_service(self) -> EventService:
        """Tail, dead letters and replay of the event log."""
        from loopstack.core.events.service import EventService

        return EventService(self.event_log)

    @cached_property
    def event_log(self) -> EventLog:
        """The configured event log."""
        from loopstack.core.events.log import open_event_log

        return open_event_log(self.settings)

    @cached_property
    def publisher(self) -> Publisher:
        """This process's outbox publisher."""
        from loopstack.core.events.outbox import Publisher

        return Publisher.open(self.settings, self.event_log, "api", metrics=self.event_metrics)

    @cached_property
    def model_registry(self) -> ModelRegistry:
        """MLflow registry with decision events."""
        from loopstack.registry.registry import ModelRegistry

        return ModelRegistry(
            self.settings.mlflow_tracking_uri, self.publisher, source="loopstack/api"
        )

    @cached_property
    def adoption(self) -> ModelAdoption:
        """Registers models trained outside Loopstack (`loopstack models register`)."""
        from loopstack.pipelines.adoption import ModelAdoption

        return ModelAdoption(self.settings, self.model_registry)

    @cached_property
    def backend(self) -> Backend:
        """The configured backend (embedded or Kubernetes)."""
        from loopstack.serving.backends import open_backend

        return open_backend(self.settings)

    @cached_property
    def deployment_service(self) -> DeploymentService:
        """Deploy and traffic; aliases are pinned to versions through the registry."""
        from loopstack.serving.deployments import DeploymentService

        return DeploymentService(self.model_registry, self.backend)

    @cached_property
    def drift_store(self) -> DriftStore:
        """The drift consumer's store (its read table of reported windows)."""
        from loopstack.monitoring.drift.store import DriftStore

        return DriftStore.from_settings(self.settings)

    @cached_property
    def drift(self) -> DriftQueries:
        """Latest drift windows per model, version and feature."""
        from loopstack.monitoring.drift.queries import DriftQueries

        return DriftQueries(self.drift_store)

    @cached_property
    def feedback(self) -> FeedbackService:
        """Feedback intake, read-model queries and rebuilds."""
        from loopstack.monitoring.feedback.service import FeedbackService

        return FeedbackService.from_settings(self.settings, self.event_log, self.publisher)

    @cached_property
    def why(self) -> PredictionWhy:
        """Why a prediction: the read model's record with its version's lineage."""
        from loopstack.monitoring.feedback.why import PredictionWhy

        return PredictionWhy(self.feedback.queries, self.model_registry)

    @cached_property
    def feature_store(self) -> FeatureStore:
        """The Feast store (opened once: materialize and push share it)."""
        from loopstack.features.store import open_store

        return open_store(self.settings)

    @cached_property
    def loop(self) -> LoopService:
        """Manual retraining and the decision history."""
        from loopstack.loop.service import LoopService

        return LoopService(
            self.settings, self.publisher, self.backend, self.feedback.read_model.engine
        )

    def close(self) -> None:
        """Flush and close what was opened."""
        if "loop" in self.__dict__:
            self.loop.close()
        if "feedback" in self.__dict__:
            self.feedback.close()
        if "publisher" in self.__dict__:
            self.publisher.close(timeout=10)
        if "idempotency" in self.__dict__:
            self.idempotency.close()
        if "drift_store" in self.__dict__:
            self.drift_store.close()
        if "event_log" in self.__dict__:
            self.event_log.close()
