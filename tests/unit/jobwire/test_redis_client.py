"""jobwire/redis_client.py: which Redis a process's settings connect to (no server needed: clients
connect lazily)."""

from __future__ import annotations

from redis.asyncio.sentinel import SentinelConnectionPool

from jobwire.config import Settings
from jobwire.redis_client import create_redis


async def test_without_sentinels_the_url_is_the_server() -> None:
    redis = create_redis(Settings(redis_url="redis://cache:6380/3"))
    kwargs = redis.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache", 6380, 3)
    assert not isinstance(redis.connection_pool, SentinelConnectionPool)
    await redis.aclose()


async def test_with_sentinels_they_name_the_primary_and_the_url_gives_database_and_credentials() -> None:
    settings = Settings(
        redis_url="redis://app:s%3Acret@ignored:1/2",
        redis_sentinels="10.0.0.1:26379,10.0.0.2:26379",
        redis_sentinel_master="queue",
    )
    redis = create_redis(settings)
    pool = redis.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "queue" and pool.is_master
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in pool.sentinel_manager.sentinels
    ] == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (2, "app", "s:cret")
    await redis.aclose()
