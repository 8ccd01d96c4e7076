"""The settle loop: a batch whose jobs are all terminal ends, once.

A trigger notes every batch job that reaches a terminal status (`batch_checks`, committed with the
job's transition, whatever the path: a worker, a cancel, the expiry sweep, a bulk action, a
dependency's failure). Every api and worker process runs this loop: it takes notes (SKIP LOCKED, so
loops side by side take different ones) and settles the batches they name whose jobs are all
terminal (batchstore.settle: final counts, `completed` unless cancelled, the batch webhook owed),
then tells the batch's streams. Nothing about a batch is written by a job's own transition, so the
jobs of a batch finishing at once on many workers never wait on one another.
"""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from jobwire import batchstore, events, periodic
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import publish
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

log = get_logger("jobwire.batches")

# notes taken per transaction
PAGE = 1000


async def settle_once(pool: asyncpg.Pool, redis: Redis, keys: Keys) -> int:
    """Take every note there is, a page at a time, and settle what can be; returns how many batches
    settled."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            batch_ids = await batchstore.take_checks(conn, PAGE)
            settled = await batchstore.settle(conn, batch_ids) if batch_ids else []
        total += len(settled)
        if settled:
            log.info("batches settled", count=len(settled))
            try:
                await publish(redis, keys, [events.batch_message(r["tenant"], r["id"]) for r in settled])
            except REDIS_UNAVAILABLE as exc:
                # a batch stream re-reads the batch every few seconds anyway
                log.warning("settled batches not published", error=str(exc), count=len(settled))
        if not batch_ids:
            return total


async def run(pool: asyncpg.Pool, redis: Redis, keys: Keys, *, interval_s: float) -> None:
    """Settle every `interval_s` until cancelled."""
    await periodic.every(interval_s, lambda: settle_once(pool, redis, keys), what="batch settle", log=log)
