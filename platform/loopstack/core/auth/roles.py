"""The roles a caller may hold, and the principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ANONYMOUS", "Principal", "Role"]


class Role(StrEnum):
    """What a caller may do; each management endpoint names the roles it admits."""

    ADMIN = "admin"
    DATA_SCIENTIST = "data-scientist"  # train, register
    DEPLOYER = "deployer"  # deploy, traffic, promote, roll back
    APP = "app"  # inference and feedback only
    VIEWER = "viewer"  # read-only (on-call, auditors)

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named `text`, or ValueError listing the known ones."""
        try:
            return cls(text)
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise ValueError(f"unknown role {text!r}; one of: {known}") from None


@dataclass(frozen=True)
class Principal:
    """The caller a request acts as: who (for the audit trail) and with which roles."""

    subject: str
    roles: frozenset[Role]
    kind: str  # "api-key", "jwt" or "anonymous" (auth disabled)

    def as_actor(self) -> dict[str, object]:
        """The audit trail's view of this caller."""
        return {"subject": self.subject, "roles": sorted(self.roles), "kind": self.kind}


ANONYMOUS = Principal("anonymous", frozenset(Role), "anonymous")
"""Who acts when auth is disabled (the embedded default: loopback only): every role."""
