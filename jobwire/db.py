"""PostgreSQL: connection pools, the migration, and what counts as "the database is unreachable"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"

# Errors that mean "PostgreSQL cannot be reached right now" (answered 503 + Retry-After), as opposed
# to a bug in a query (answered 500).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    # a connection the server dropped while asyncpg was still reading its error reply: the next
    # statement on it fails this way (the pool then discards it); seen when PostgreSQL shuts down
    asyncpg.exceptions.InternalClientError,
)

# One lock id for `migrate`, so two deploys running it at once apply the schema one after the other.
_MIGRATE_LOCK = 0x6A6F62776972


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def create_pool(database_url: str, *, min_size: int = 0, max_size: int = 10) -> asyncpg.Pool:
    """A pool that opens connections lazily (min_size=0), so a process starts even while PostgreSQL
    is down and recovers by itself when it comes back."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        timeout=5,
        command_timeout=30,
        max_inactive_connection_lifetime=60,
    )
    assert pool is not None
    return pool


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise ValueError(f"the database URL names no database: {url!r}")
    return name


async def create_database_if_missing(database_url: str) -> bool:
    """Create the URL's database when it does not exist. Returns True when it was created."""
    name = database_name(database_url)
    try:
        conn = await asyncpg.connect(database_url, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(_with_database(database_url, "postgres"), timeout=10)
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await admin.execute(f"CREATE DATABASE {quoted}")
    except asyncpg.DuplicateDatabaseError:
        return False  # created by a concurrent migrate
    finally:
        await admin.close()
    return True


async def apply_schema(database_url: str, schema_sql: str | None = None) -> None:
    sql = schema_sql if schema_sql is not None else SCHEMA_PATH.read_text()
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            await conn.execute(sql)
    finally:
        await conn.close()


def server_address(url: str) -> str:
    """host:port of a database URL, for messages (never its password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


async def wait_for_server(
    database_url: str, wait_s: float, on_retry: Callable[[BaseException], None] | None = None
) -> None:
    """Until PostgreSQL accepts a connection (a missing database counts: the server is up), retrying
    for wait_s seconds; raises the last connection error past that. A container's PostgreSQL may
    still be starting (refusing, or answering "the database system is starting up") when the
    migration starts."""
    deadline = time.monotonic() + wait_s
    delay = 0.1
    while True:
        try:
            conn = await asyncpg.connect(database_url, timeout=max(1.0, min(10.0, wait_s)))
        except asyncpg.InvalidCatalogNameError:
            return
        except UNAVAILABLE as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if on_retry is not None:
                on_retry(exc)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 1.0)
        else:
            await conn.close()
            return


async def migrate(database_url: str) -> bool:
    """Create the database if missing and apply schema.sql; safe to run twice."""
    created = await create_database_if_missing(database_url)
    await apply_schema(database_url)
    return created
