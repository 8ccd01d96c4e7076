"""PostgreSQL: connection pools, the migration, and what counts as "the database is unreachable"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import orjson

from jobwire.config import Settings

if TYPE_CHECKING:
    from jobwire.jobstore import Conn, Row

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


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pooled connection's release with nothing to reset: through a transaction pooler, which
    hands the server connection to someone else after every transaction anyway (asyncpg's reset
    could reach another client's server session with its pg_advisory_unlock_all), or in a pool whose
    users leave no session state behind. asyncpg's reset is a round trip on every release, before
    the statement's caller gets its answer. An open transaction is still rolled back: asyncpg does
    that before it calls this (tests/integration/test_db_pool.py)."""


def session_url(settings: Settings) -> str:
    """Where connections that need a session of their own go: migrate, LISTEN/NOTIFY, session-level
    advisory locks, anything holding state between transactions. JOBWIRE_DATABASE_DIRECT_URL, else
    JOBWIRE_DATABASE_URL; never a transaction pooler."""
    return settings.session_database_url


def _target(database: str | Settings, direct: bool) -> tuple[str, dict[str, Any]]:
    """The URL and the asyncpg options of a connection. Through a transaction pooler (PgBouncer,
    pool_mode=transaction) consecutive transactions may run on different server connections, so a
    prepared statement made in one may be missing in the next: asyncpg keeps no statement cache there
    (it then prepares each query unnamed, again with every execution)."""
    if isinstance(database, str):
        return database, {}
    if direct:
        return session_url(database), {}
    if database.behind_pooler:
        return database.database_url, {"statement_cache_size": 0}
    return database.database_url, {}


async def create_pool(
    database: str | Settings,
    *,
    min_size: int = 0,
    max_size: int = 10,
    direct: bool = False,
    reset: bool = True,
) -> asyncpg.Pool:
    """A pool that opens connections lazily (min_size=0), so a process starts even while PostgreSQL
    is down and recovers by itself when it comes back. Given a process's settings it goes to
    JOBWIRE_DATABASE_URL, which may be a transaction pooler; `direct=True`: to `session_url`, for
    work that needs a session (see docs/ARCHITECTURE.md, "Behind a connection pooler").
    `reset=False` for a pool whose users run only single statements and managed transactions (no
    SET, LISTEN, cursor or session-level lock): its connections go back without asyncpg's reset,
    a round trip saved on every use."""
    url, options = _target(database, direct)
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        timeout=5,
        command_timeout=30,
        max_inactive_connection_lifetime=60,
        reset=_keep_session if options or not reset else None,
        **options,
    )
    assert pool is not None
    return pool


async def connect(
    database: str | Settings, *, direct: bool = False, timeout: float = 10
) -> asyncpg.Connection:
    """One connection (no codecs), with the same rules as `create_pool`: a LISTEN needs
    `direct=True`."""
    url, options = _target(database, direct)
    conn: asyncpg.Connection = await asyncpg.connect(url, timeout=timeout, **options)
    return conn


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


async def newest_first(
    conn: Conn, table: str, tenant: str | None, limit: int, after: tuple[datetime, UUID] | None
) -> list[Row]:
    """One page of `table` (a name of ours, never input) for `tenant` (None: every tenant), newest
    first, keyset-paginated on (created_at, id): the rows after `after`, a page's last row. The
    lists of batches, schedules and webhook endpoints, each on an index on (tenant, created_at
    DESC, id DESC). The first page and the next ones are two statements, so that each keeps a plan
    that reads that index from where the page starts."""
    tenant_is = "($1::text IS NULL OR tenant = $1)"
    order = "ORDER BY created_at DESC, id DESC"
    if after is None:
        return list(
            await conn.fetch(f"SELECT * FROM {table} WHERE {tenant_is} {order} LIMIT $2", tenant, limit)
        )
    return list(
        await conn.fetch(
            f"SELECT * FROM {table} WHERE {tenant_is} AND (created_at, id) < ($2, $3) {order} LIMIT $4",
            tenant,
            *after,
            limit,
        )
    )
