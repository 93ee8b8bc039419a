"""API keys: random, prefixed with their role, stored hashed, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ROLES, ApiKey

ROLE_PREFIX = {"storefront": "sf", "support": "sup", "ops": "ops", "admin": "adm", "customer": "cus"}
PREFIX_ROLE = {v: k for k, v in ROLE_PREFIX.items()}


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's id (for auditing and idempotency scope), its role and, for customers, who."""

    key_id: int
    role: str
    customer_id: int | None

    @property
    def actor(self) -> str:
        return f"{self.role}:key{self.key_id}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    session: AsyncSession, role: str, *, customer_id: int | None = None, label: str = ""
) -> str:
    """Create a key and return it in full; only its hash is kept, so this is the one time it is seen."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if (role == "customer") != (customer_id is not None):
        raise ValueError("a customer key needs a customer id, and only a customer key has one")
    lookup = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    session.add(
        ApiKey(lookup=lookup, secret_hash=_hash(secret), role=role, customer_id=customer_id, label=label)
    )
    await session.flush()
    return f"bo_{ROLE_PREFIX[role]}_{lookup}.{secret}"


async def import_key(
    session: AsyncSession, key: str, role: str, *, customer_id: int | None = None, label: str = ""
) -> None:
    """Register a key that already exists in full (the dev stack keeps its demo keys across restarts)."""
    lookup, secret = _split(key)
    found = await session.scalar(select(ApiKey).where(ApiKey.lookup == lookup))
    if found is None:
        session.add(
            ApiKey(lookup=lookup, secret_hash=_hash(secret), role=role, customer_id=customer_id, label=label)
        )
        await session.flush()


def _split(key: str) -> tuple[str, str]:
    # Keys are printable ASCII: anything else (a NUL, a lone surrogate) is no key and must not reach a query.
    if not (key.isascii() and key.isprintable()):
        return "", ""
    try:
        head, secret = key.split(".", 1)
        _bo, prefix, lookup = head.split("_", 2)
    except ValueError:
        return "", ""
    if _bo != "bo" or prefix not in PREFIX_ROLE:
        return "", ""
    return lookup, secret


@dataclass(frozen=True)
class KeyInfo:
    """A key as operators see it: never its secret."""

    id: int
    prefix: str  # bo_<role>_<lookup>: enough to recognise a key, useless to call with
    role: str
    customer_id: int | None
    label: str
    created_at: datetime
    revoked_at: datetime | None


async def list_keys(session: AsyncSession, *, include_revoked: bool = False) -> list[KeyInfo]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [
        KeyInfo(
            id=k.id,
            prefix=f"bo_{ROLE_PREFIX[k.role]}_{k.lookup}",
            role=k.role,
            customer_id=k.customer_id,
            label=k.label,
            created_at=k.created_at,
            revoked_at=k.revoked_at,
        )
        for k in await session.scalars(query)
    ]


async def revoke_key(session: AsyncSession, key_id: int) -> bool:
    """Revoke a key at once: `authenticate` reads the row on every request, so no cache keeps it alive.

    Returns False when no such key exists or it was already revoked.
    """
    result = await session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=func.now())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def authenticate(session: AsyncSession, key: str) -> Caller | None:
    lookup, secret = _split(key)
    if not lookup:
        return None
    row = await session.scalar(select(ApiKey).where(ApiKey.lookup == lookup, ApiKey.revoked_at.is_(None)))
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    return Caller(key_id=row.id, role=row.role, customer_id=row.customer_id)


async def active_caller(session: AsyncSession, key_id: int) -> Caller | None:
    """The caller a key id stands for while the key is not revoked (the console's session holds only the id,
    so a revoked key signs its sessions out at once)."""
    row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))
    if row is None:
        return None
    return Caller(key_id=row.id, role=row.role, customer_id=row.customer_id)
