"""Which roles each management endpoint admits: one table, checked on every request.

A route missing from the table admits nobody (fail closed); the role-matrix test fails first.
"""

from __future__ import annotations

from loopstack.core.auth import Role

__all__ = ["PUBLIC", "ROUTE_ROLES", "allowed_roles"]

A, DS, DEP, APP, V = Role.ADMIN, Role.DATA_SCIENTIST, Role.DEPLOYER, Role.APP, Role.VIEWER
READERS = frozenset({A, DS, DEP, V})
"""Read-only access: everyone but the `app` role (which sees inference and feedback only)."""
PUBLIC: frozenset[Role] = frozenset()
"""Marker: no credentials needed (liveness and Prometheus scrapes)."""

ROUTE_ROLES: dict[tuple[str, str], frozenset[Role]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/v1/models"): READERS,
    ("GET", "/v1/models/{name}"): READERS,
    ("GET", "/v1/models/{name}/versions/{ref}/lineage"): READERS,
    ("POST", "/v1/models/{name}/promote"): frozenset({A, DEP}),
    ("POST", "/v1/models/{name}/versions"): frozenset({A, DS}),
    ("POST", "/v1/models/{name}/rollback"): frozenset({A, DEP}),
    ("POST", "/v1/models/{name}/retrain"): frozenset({A, DS}),
    ("GET", "/v1/models/{name}/history"): READERS,
    ("GET", "/v1/pipelines"): READERS,
    ("GET", "/v1/pipelines/runs"): READERS,
    ("GET", "/v1/pipelines/runs/{run_id}"): READERS,
    ("POST", "/v1/pipelines/runs/{run_id}/cancel"): frozenset({A, DS}),
    ("POST", "/v1/pipelines/{name}/runs"): frozenset({A, DS}),
    ("POST", "/v1/models/{name}/deployments"): frozenset({A, DEP}),
    ("GET", "/v1/models/{name}/traffic"): READERS,
    ("GET", "/v1/deployments"): READERS,
    ("GET", "/v1/models/{name}/drift"): READERS,
    ("POST", "/v1/feedback"): frozenset({A, APP}),
    ("POST", "/v1/feedback/rebuild"): frozenset({A}),
    ("GET", "/v1/models/{name}/quality"): READERS,
    ("GET", "/v1/predictions/{prediction_id}"): READERS,
    ("GET", "/v1/predictions/{prediction_id}/why"): READERS,
    ("GET", "/v1/predictions"): READERS,
    ("GET", "/v1/reviews"): READERS | {APP},
    ("POST", "/v1/reviews/{prediction_id}/decision"): frozenset({A, DS, APP}),
    ("POST", "/v1/features/apply"): frozenset({A, DS}),
    ("POST", "/v1/features/materialize"): frozenset({A, DS}),
    ("GET", "/v1/events/dlq"): READERS,
    ("POST", "/v1/events/replay"): frozenset({A}),
    ("GET", "/v1/events/{topic}"): READERS,
    ("GET", "/v1/auth/whoami"): frozenset(Role),
    ("GET", "/v1/auth/keys"): frozenset({A}),
    ("POST", "/v1/auth/keys"): frozenset({A}),
    ("POST", "/v1/auth/keys/{key_id}/revoke"): frozenset({A}),
    ("GET", "/v1/audit"): READERS,
}


def allowed_roles(method: str, path: str) -> frozenset[Role] | None:
    """Roles admitted to `method path` (a route template), PUBLIC, or None if not listed."""
    return ROUTE_ROLES.get((method, path))
