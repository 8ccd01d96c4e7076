"""API keys: created by `jobwire keys create`, stored as sha256 hashes, looked up per request."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from common.jobstore import Conn

TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_PREFIX = "jw_"


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


def validate_tenant(tenant: str) -> str:
    if not TENANT_RE.match(tenant):
        raise ValueError(
            f"invalid tenant name {tenant!r}: 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-',"
            " starting with a letter or digit"
        )
    return tenant


async def create_key(conn: Conn, tenant: str, *, admin: bool) -> str:
    validate_tenant(tenant)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
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
