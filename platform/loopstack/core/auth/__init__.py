"""Who is calling: API keys (stored hashed, `keys`) and OIDC JWTs (`jwt`), mapped to roles by the
`authenticator`. Only the roles are re-exported here: the CLI imports them and stays light."""

from loopstack.core.auth.roles import ANONYMOUS, Principal, Role

__all__ = ["ANONYMOUS", "Principal", "Role"]
