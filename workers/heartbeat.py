"""One loop per worker process that keeps its running jobs' ARQ leases alive and delivers cancel
requests to them.

ARQ marks a running job with an in-progress key and gives the job to another worker only once that
key expires. ARQ sets it to the job timeout + 10 s, so a SIGKILLed worker's hour-long job would wait
an hour: jobwire sets it to a short lease instead (JOBWIRE_WORKER_LEASE_S) and renews it here while
the job runs. Cancel requests are read from PostgreSQL, one query per tick for every running job.
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import asyncpg
from redis.asyncio import Redis

from jobwire import db, jobstore
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from workers import leases
from workers.runtime import RunHandle, Runtime

log = get_logger("jobwire.heartbeat")


class Heartbeat:
    def __init__(
        self,
        runtime: Runtime,
        pool: asyncpg.Pool,
        redis: Redis,
        keys: Keys,
        *,
        lease_s: float,
        tick_s: float = 0.5,
    ) -> None:
        self.runtime = runtime
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.lease_s = lease_s
        self.tick_s = tick_s
        self._last_renewal = 0.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            if not self.runtime.runs:
                continue
            await self.tick()

    async def tick(self) -> None:
        handles = dict(self.runtime.runs)
        if time.monotonic() - self._last_renewal >= self.lease_s / 3:
            await self.renew_leases(handles)
        try:
            cancelled = await jobstore.cancel_requested_among(self.pool, list(handles))
        except db.UNAVAILABLE as exc:
            log.warning("cannot read cancel requests", error=str(exc))
            return
        for job_id in cancelled:
            handle = handles.get(job_id)
            if handle is not None and not handle.cancel_requested:
                log.info("cancelling running job", job_id=str(job_id))
                handle.cancel()

    async def renew_leases(self, handles: dict[UUID, RunHandle]) -> None:
        runs = [(str(job_id), handle.lease) for job_id, handle in handles.items()]
        try:
            await leases.renew(self.redis, self.keys, runs, self.lease_s)
        except REDIS_UNAVAILABLE as exc:
            log.warning("cannot renew job leases", error=str(exc))
            return
        self._last_renewal = time.monotonic()
