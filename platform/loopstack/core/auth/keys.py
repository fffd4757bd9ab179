"""API keys: shown once at creation, stored as a hash, looked up by their public id.

A key reads `lsk_<id>_<secret>`. The secret is 256 random bits, so a single SHA-256 is enough to
make the stored hash useless to a thief (a slow password hash defends low-entropy secrets only)
and keeps a per-request check cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from loopstack.core.auth.roles import Role
from loopstack.core.errors import Conflict, NotFound, Unavailable
from loopstack.core.events import ConsumerStore, reading
from loopstack.core.settings import Settings

__all__ = ["ApiKey", "ApiKeyStore", "auth_store_url"]

_KEY = re.compile(r"lsk_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})")

metadata = MetaData()
api_keys = Table(
    "auth_api_keys",
    metadata,
    Column("key_id", String(12), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("revoked_at", DateTime),
)


def auth_store_url(settings: Settings) -> str:
    """`auth.store_url`, or `sqlite:///<state dir>/auth/auth.db`."""
    return settings.auth.store_url or settings.state_sqlite_url("auth", "auth.db")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A stored key's public facts (never its secret)."""

    key_id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "key_id": self.key_id, "name": self.name, "role": self.role.value,
            "created_at": self.created_at.isoformat() + "Z", "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() + "Z" if self.revoked_at else None,
        }  # fmt: skip


class ApiKeyStore:
    """Create, verify, list and revoke API keys (SQLite embedded, PostgreSQL at scale)."""

    def __init__(self, url: str) -> None:
        try:
            self.engine = ConsumerStore(url).engine
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"auth store unavailable: {str(exc).splitlines()[0]}; "
                "check LOOPSTACK_AUTH__STORE_URL"
            ) from exc

    def create(self, role: Role, name: str, created_by: str) -> tuple[str, ApiKey]:
        """A new key: the token (shown once, never stored) and its record."""
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = datetime.now(UTC).replace(tzinfo=None)
        row = {"key_id": key_id, "name": name, "role": role.value, "created_at": now,
               "created_by": created_by, "secret_sha256": _digest(secret), "revoked_at": None}  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(**row))
        return f"lsk_{key_id}_{secret}", self._key(row)

    def verify(self, token: str) -> ApiKey | None:
        """The live key `token` is, or None (malformed, unknown, revoked or wrong secret)."""
        match = _KEY.fullmatch(token)
        if match is None:
            return None
        with reading(self.engine) as conn:
            row = conn.execute(
                select(api_keys).where(api_keys.c.key_id == match["id"])
            ).mappings().first()  # fmt: skip
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(row["secret_sha256"], _digest(match["secret"])):
            return None
        return self._key(row)

    def all_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        with reading(self.engine) as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings()
            return [self._key(r) for r in rows]

    def has_admin(self) -> bool:
        """Whether any live admin key exists (until then, the first one may be created locally)."""
        return any(k.role is Role.ADMIN and k.revoked_at is None for k in self.all_keys())

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key; its token stops working at once."""
        with self.engine.begin() as conn:
            found = select(api_keys).where(api_keys.c.key_id == key_id)
            row = conn.execute(found).mappings().first()
            if row is None:
                raise NotFound(f"API key {key_id!r} does not exist; see `loopstack auth keys`")
            if row["revoked_at"] is not None:
                raise Conflict(f"API key {key_id!r} was revoked already")
            now = datetime.now(UTC).replace(tzinfo=None)
            conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=now))
        return self._key({**row, "revoked_at": now})

    @staticmethod
    def _key(row: Mapping[Any, Any]) -> ApiKey:
        return ApiKey(row["key_id"], row["name"], Role(row["role"]), row["created_at"],
                      row["created_by"], row["revoked_at"])  # fmt: skip
