"""OIDC access tokens: signature checked against the issuer's JWKS, roles read from a claim."""

from __future__ import annotations

from typing import Any

import jwt
from jwt import PyJWKClient

from loopstack.core.auth.roles import Principal, Role
from loopstack.core.errors import ConfigurationError, Unauthorized
from loopstack.core.settings import AuthSettings

__all__ = ["JwtVerifier"]


class JwtVerifier:
    """Verifies bearer JWTs of one OIDC issuer (keys fetched from `auth.jwks_url`, cached)."""

    def __init__(self, settings: AuthSettings) -> None:
        if not settings.jwks_url:
            raise ConfigurationError("JWTs need LOOPSTACK_AUTH__JWKS_URL (the issuer's JWKS)")
        self.settings = settings
        self._keys = PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def verify(self, token: str) -> Principal:
        """The principal a valid token names, or Unauthorized saying what is wrong with it."""
        s = self.settings
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=s.jwt_algorithms, audience=s.jwt_audience,
                issuer=s.jwt_issuer, options={"require": ["exp", "sub"]},
            )  # fmt: skip
        except jwt.PyJWKClientConnectionError as exc:
            raise Unauthorized(f"cannot fetch the issuer's keys from {s.jwks_url}: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        raw = claims.get(s.roles_claim, [])
        names = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
        roles = frozenset(Role(n) for n in names if n in Role._value2member_map_)
        return Principal(str(claims["sub"]), roles, "jwt")
