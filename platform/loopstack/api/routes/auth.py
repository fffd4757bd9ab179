"""API keys and the caller's identity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from loopstack.api.auth import principal_of
from loopstack.api.services import Services
from loopstack.core.auth import Role

__all__ = ["router"]


class KeyRequest(BaseModel):
    """A new API key: its role and a name saying who or what holds it."""

    role: Role
    name: str = Field(min_length=1, max_length=128, pattern=r"^[\w.@ -]+$")


def router(services: Services) -> APIRouter:
    """Routes under /v1/auth: whoami, keys (create, list, revoke)."""
    api = APIRouter(prefix="/v1/auth", tags=["auth"])

    @api.get("/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        """Who the API takes the caller for, with which roles."""
        return principal_of(request).as_actor()

    @api.get("/keys")
    def keys() -> list[dict[str, Any]]:
        """Every API key (never a secret), oldest first."""
        return [k.as_dict() for k in services.api_keys.all_keys()]

    @api.post("/keys", status_code=201)
    def create_key(body: KeyRequest, request: Request) -> dict[str, Any]:
        """Create a key; its token is in this answer only (it is stored hashed)."""
        token, key = services.api_keys.create(body.role, body.name, principal_of(request).subject)
        return {**key.as_dict(), "token": token}

    @api.post("/keys/{key_id}/revoke")
    def revoke_key(key_id: str) -> dict[str, Any]:
        """Revoke a key; requests carrying it are refused from now on."""
        return services.api_keys.revoke(key_id).as_dict()

    return api
