"""Redis connections and what counts as "Redis is unreachable"."""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


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
