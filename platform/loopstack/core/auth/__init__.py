"""Who is calling: API keys (stored hashed) and OIDC JWTs, mapped to roles."""

from loopstack.core.auth.authenticator import Authenticator
from loopstack.core.auth.keys import ApiKeyStore, auth_store_url
from loopstack.core.auth.roles import ANONYMOUS, Principal, Role

__all__ = ["ANONYMOUS", "ApiKeyStore", "Authenticator", "Principal", "Role", "auth_store_url"]
