"""Redis connections and what counts as "Redis is unreachable"."""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobwire.keys import Keys

# redis-py turns socket errors into its own ConnectionError and TimeoutError, so a bare OSError is
# never Redis here: it belongs to PostgreSQL (asyncpg raises them as they come), see jobwire.db
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)


def create_redis(url: str, *, socket_timeout: float | None = 5) -> ArqRedis:
    """An ArqRedis (a redis.asyncio.Redis) client; connections are opened lazily, so a process starts
    while Redis is down. `socket_timeout=None` is for pub/sub connections that block on reads."""
    return ArqRedis.from_url(  # type: ignore[no-any-return]
        url,
        socket_connect_timeout=3,
        socket_timeout=socket_timeout,
        retry_on_timeout=False,
        health_check_interval=30,
    )


async def delete_namespace(redis: Redis, keys: Keys) -> int:
    """Delete every key of one namespace and nothing else (the server may be shared): for tests and
    benchmarks that start each run from nothing. Returns how many keys went."""
    doomed: list[bytes] = []
    for pattern in keys.patterns():
        doomed += [key async for key in redis.scan_iter(match=pattern, count=1000)]
    for start in range(0, len(doomed), 1000):
        await redis.unlink(*doomed[start : start + 1000])
    return len(doomed)
