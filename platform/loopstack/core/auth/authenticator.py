"""Turn an `Authorization` header into a principal: API key first, then JWT if configured."""

from __future__ import annotations

from loopstack.core.auth.jwt import JwtVerifier
from loopstack.core.auth.keys import ApiKeyStore, auth_store_url
from loopstack.core.auth.roles import Principal
from loopstack.core.errors import Unauthorized
from loopstack.core.settings import Settings

__all__ = ["Authenticator"]

_MISSING = "missing bearer token: send `Authorization: Bearer <API key or JWT>` (LOOPSTACK_API__TOKEN for the CLI)"


class Authenticator:
    """Authenticates requests for one process (the API, the inference server)."""

    def __init__(self, settings: Settings, keys: ApiKeyStore | None = None) -> None:
        self.settings = settings
        self.keys = keys or ApiKeyStore(auth_store_url(settings))
        self._jwt = JwtVerifier(settings.auth) if settings.auth.jwks_url else None

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind the header, or Unauthorized naming what is missing or wrong."""
        if authorization is None:
            raise Unauthorized(_MISSING)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(_MISSING)
        token = token.strip()
        if token.startswith("lsk_"):
            key = self.keys.verify(token)
            if key is None:
                raise Unauthorized("unknown or revoked API key; ask an admin for a new one")
            return Principal(f"key:{key.key_id}:{key.name}", frozenset({key.role}), "api-key")
        if self._jwt is None:
            raise Unauthorized(
                "not an API key, and JWTs are off: set LOOPSTACK_AUTH__JWKS_URL to accept them"
            )
        return self._jwt.verify(token)
