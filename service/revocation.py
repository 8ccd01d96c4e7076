"""Revoked API keys end what they opened. Every api process reads, every CHECK_INTERVAL_S, the ids
of the keys revoked lately; their open SSE streams and WebSockets (and those of the stream tokens
they minted) end, and a principal still in this process's key cache is refused. Stream tokens are
checked against the validity of the key that minted them."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from jobwire import apikeys, db
from jobwire.logs import get_logger
from service.hub import EventHub
from service.ttlcache import TTLCache

log = get_logger("jobwire.revocation")

# how often each api reads the keys revoked lately (a module constant so that tests can shorten it)
CHECK_INTERVAL_S = 5.0
# how long a key's validity, as seen by a stream token, is cached: the key cache's life
LIVE_TTL_S = 30.0
LIVE_MAX = 10_000


class Revocations:
    def __init__(self) -> None:
        # keys revoked within the window read by `poll`: it outlasts the key cache's life, so a
        # principal cached before its revocation is refused until its cache entry has expired
        self.revoked: frozenset[int] = frozenset()
        self._live: TTLCache[int, bool] = TTLCache(LIVE_MAX)

    def is_revoked(self, key_id: int) -> bool:
        return key_id in self.revoked

    async def key_is_live(self, pool: asyncpg.Pool, key_id: int) -> bool:
        """Whether the key (of a stream token) exists and is not revoked; cached like API keys."""
        if key_id in self.revoked:
            return False
        cached = self._live.get(key_id)
        if cached is not None:
            return cached[0]
        live = await apikeys.is_live(pool, key_id)
        self._live.put(key_id, live, LIVE_TTL_S)
        return live

    async def poll(self, pool: asyncpg.Pool) -> frozenset[int]:
        """Read the keys revoked within the window; returns them."""
        window_s = LIVE_TTL_S + 3 * CHECK_INTERVAL_S
        self.revoked = frozenset(await apikeys.revoked_since(pool, window_s))
        for key_id in self.revoked:
            self._live.pop(key_id)
        return self.revoked

    async def run(self, pool: asyncpg.Pool, hub: EventHub) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                revoked = await self.poll(pool)
            except db.UNAVAILABLE as exc:
                log.warning("could not read revoked keys", error=repr(exc))
                continue
            # every round, not only for newly seen ids: a stream that passed authentication just
            # before the revocation was seen may have opened since the last round
            if revoked and (ended := hub.close_keys(revoked)):
                log.info("ended the streams of revoked keys", streams=ended, keys=sorted(revoked))


REVOCATIONS = web.AppKey("revocations", Revocations)
