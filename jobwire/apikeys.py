"""API keys: created by `jobwire keys create`, stored as sha256 hashes, looked up per request, listed
and revoked by `jobwire keys list` / `jobwire keys revoke`."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import asyncpg

from jobwire.jobstore import Conn

TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_PREFIX = "jw_"
KEY_BYTES = 32
# what create_key makes: the prefix and token_urlsafe(KEY_BYTES), 43 characters of base64url; a key
# of any other form was never issued, and is refused without a database lookup
KEY_RE = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9_-]{{{len(secrets.token_urlsafe(KEY_BYTES))}}}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant, and whether the key may see every tenant."""

    tenant: str
    is_admin: bool
    key_id: int
    # set for a job-scoped stream token: it opens that job's event stream and nothing else
    job_scope: str | None = None

    def scope(self) -> str | None:
        """The tenant to filter by, or None for an admin (sees every tenant)."""
        return None if self.is_admin else self.tenant


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def well_formed(key: str) -> bool:
    """Whether `key` has the form of the keys create_key makes (so could exist at all)."""
    return KEY_RE.fullmatch(key) is not None


def validate_tenant(tenant: str) -> str:
    if not TENANT_RE.match(tenant):
        raise ValueError(
            f"invalid tenant name {tenant!r}: 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-',"
            " starting with a letter or digit"
        )
    return tenant


async def create_key(conn: Conn, tenant: str, *, admin: bool) -> str:
    validate_tenant(tenant)
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    await conn.execute(
        "INSERT INTO api_keys (tenant, key_hash, key_prefix, is_admin) VALUES ($1, $2, $3, $4)",
        tenant,
        hash_key(key),
        key[:10],
        admin,
    )
    return key


async def lookup(conn: Conn, key: str) -> Principal | None:
    row = await conn.fetchrow(
        "SELECT id, tenant, is_admin FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    if row is None:
        return None
    return Principal(tenant=row["tenant"], is_admin=row["is_admin"], key_id=row["id"])


async def list_keys(conn: Conn, tenant: str | None) -> list[asyncpg.Record]:
    """Every key (of `tenant`, or of all tenants), oldest first; never the key itself, only its
    first characters."""
    return list(
        await conn.fetch(
            "SELECT id, tenant, key_prefix, is_admin, created_at, revoked_at FROM api_keys"
            " WHERE $1::text IS NULL OR tenant = $1 ORDER BY id",
            tenant,
        )
    )


async def revoke_key(conn: Conn, key_or_id: str) -> asyncpg.Record | None:
    """Revoke a key given as the key itself or as its id (from `keys list`). Returns the key's row
    (revoking twice keeps the first time), None when there is no such key."""
    arg: int | bytes
    if key_or_id.isdigit():
        where, arg = "id = $1", int(key_or_id)
    else:
        where, arg = "key_hash = $1", hash_key(key_or_id)
    return await conn.fetchrow(
        f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE {where}"
        " RETURNING id, tenant, key_prefix, is_admin, created_at, revoked_at",
        arg,
    )


async def is_live(conn: Conn, key_id: int) -> bool:
    """Whether the key exists and is not revoked (stream tokens carry the id of the key that minted
    them, and die with it)."""
    return await conn.fetchval("SELECT revoked_at IS NULL FROM api_keys WHERE id = $1", key_id) is True


async def revoked_since(conn: Conn, window_s: float) -> list[int]:
    """Ids of the keys revoked within the last `window_s` seconds."""
    rows = await conn.fetch(
        "SELECT id FROM api_keys WHERE revoked_at > now() - make_interval(secs => $1)", window_s
    )
    return [r["id"] for r in rows]
