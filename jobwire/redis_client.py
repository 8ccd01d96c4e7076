"""Redis connections and what counts as "Redis is unreachable"."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobwire.config import Settings
from jobwire.keys import Keys

# redis-py turns socket errors into its own ConnectionError and TimeoutError, so a bare OSError is
# never Redis here: it belongs to PostgreSQL (asyncpg raises them as they come), see jobwire.db
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)


# how long one Sentinel may take to answer who the primary is before the next one is asked
SENTINEL_TIMEOUT_S = 1.0


def create_redis(target: str | Settings, *, socket_timeout: float | None = 5) -> ArqRedis:
    """An ArqRedis (a redis.asyncio.Redis) client for a URL, or for a process's settings: through
    its Sentinels when JOBWIRE_REDIS_SENTINELS is set. Connections are opened lazily, so a process
    starts while Redis is down. `socket_timeout=None` is for pub/sub connections that block on reads.

    Through Sentinel, every new connection asks the Sentinels for the current primary, and one to a
    primary that was demoted fails as unreachable (redis-py turns its READONLY answer into a
    ConnectionError), so every caller's existing handling of a Redis outage also covers a failover.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": 3,
        "socket_timeout": socket_timeout,
        "retry_on_timeout": False,
        "health_check_interval": 30,
    }
    if isinstance(target, str):
        return ArqRedis.from_url(target, **options)  # type: ignore[no-any-return]
    if not target.sentinel_addresses:
        return ArqRedis.from_url(target.redis_url, **options)  # type: ignore[no-any-return]
    # the URL still gives the database number and the primary's credentials
    url = urlsplit(target.redis_url)
    if url.path.strip("/"):
        options["db"] = int(url.path.strip("/"))
    if url.username:
        options["username"] = unquote(url.username)
    if url.password:
        options["password"] = unquote(url.password)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        target.sentinel_addresses,
        sentinel_kwargs={"socket_connect_timeout": SENTINEL_TIMEOUT_S, "socket_timeout": SENTINEL_TIMEOUT_S},
    )
    return sentinel.master_for(target.redis_sentinel_master, redis_class=ArqRedis, **options)  # type: ignore[no-any-return]


async def is_primary(redis: Redis, connection: object) -> bool:
    """Whether `connection` (one of `redis`'s) is still to the primary its Sentinels name; always
    True without Sentinel, or when no Sentinel answers (that says nothing about the server)."""
    pool = redis.connection_pool
    if not isinstance(pool, SentinelConnectionPool) or not isinstance(connection, Connection):
        return True
    try:
        primary = await pool.sentinel_manager.discover_master(pool.service_name)
    except MasterNotFoundError:
        return True
    return (connection.host, connection.port) == tuple(primary)


async def delete_namespace(redis: Redis, keys: Keys) -> int:
    """Delete every key of one namespace and nothing else (the server may be shared): for tests and
    benchmarks that start each run from nothing. Returns how many keys went."""
    doomed: list[bytes] = []
    for pattern in keys.patterns():
        doomed += [key async for key in redis.scan_iter(match=pattern, count=1000)]
    for start in range(0, len(doomed), 1000):
        await redis.unlink(*doomed[start : start + 1000])
    return len(doomed)
