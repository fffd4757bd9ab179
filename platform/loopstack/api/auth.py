"""Every management request is authenticated and checked against the route's roles."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address

from fastapi import Request

from loopstack.api.permissions import PUBLIC, allowed_roles
from loopstack.api.services import Services
from loopstack.core.auth import ANONYMOUS, Principal, Role
from loopstack.core.errors import Forbidden

__all__ = ["authorizer", "principal_of"]

BOOTSTRAP = ("POST", "/v1/auth/keys")
"""The one call allowed without credentials, from loopback, while no admin key exists."""


def _loopback(request: Request) -> bool:
    try:
        return request.client is not None and ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def authorizer(services: Services) -> Callable[[Request], Principal]:
    """The app-wide dependency: the caller's principal, or 401/403 saying what is missing."""
    settings = services.settings

    def authorize(request: Request) -> Principal:
        route = request.scope.get("route")
        template = getattr(route, "path", request.url.path)
        roles = allowed_roles(request.method, template)
        if roles is None:
            raise Forbidden(f"{request.method} {template} has no role entry: nobody may call it")
        if roles == PUBLIC or not settings.auth.enabled:
            principal = ANONYMOUS
        elif (
            (request.method, template) == BOOTSTRAP
            and not services.api_keys.has_admin()
            and _loopback(request)
        ):
            principal = Principal("bootstrap (loopback, no admin key yet)", frozenset({Role.ADMIN}), "bootstrap")  # fmt: skip
        else:
            principal = services.authenticator.authenticate(request.headers.get("authorization"))
            request.state.principal = principal  # a refusal is audited with who was refused
            if not principal.roles & roles:
                needed = " or ".join(sorted(r.value for r in roles))
                held = ", ".join(sorted(r.value for r in principal.roles)) or "no role"
                raise Forbidden(
                    f"{request.method} {template} needs role {needed}; "
                    f"{principal.subject} has {held}"
                )
        request.state.principal = principal
        return principal

    return authorize


def principal_of(request: Request) -> Principal:
    """The principal `authorize` resolved for this request."""
    return getattr(request.state, "principal", ANONYMOUS)
