"""The worker process: an ARQ worker whose one function hands each job to the runtime, plus the
heartbeat, reconciler and retention purge loops. Used by `jobwire worker`, `jobwire dev` and the tests."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from arq.worker import func

from jobwire import batches, dependencies, expiry
from jobwire.config import Settings
from jobwire.db import create_pool
from jobwire.keys import ARQ_FUNCTION, Keys
from jobwire.liveness import Liveness
from jobwire.logs import get_logger
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from jobwire.redis_client import create_redis
from jobwire.registry import load_job_types
from jobwire.retention import RetentionPolicy
from jobwire.scheduler import Scheduler
from workers.arq_worker import CLAIMED_AT, LEASE_TOKEN, JobwireWorker
from workers.heartbeat import Heartbeat
from workers.purger import Purger
from workers.reconciler import Reconciler
from workers.runtime import Runtime
from workers.transitions import POOL_SIZE as TRANSITIONS_POOL_SIZE

log = get_logger("jobwire.worker")

# ARQ's own retry budget is not used: attempts are counted in PostgreSQL by the runtime.
ARQ_MAX_TRIES = 2**31 - 1


class WorkerService:
    def __init__(self, settings: Settings, *, concurrency: int | None = None, burst: bool = False) -> None:
        self.settings = settings
        self.concurrency = concurrency or settings.worker_concurrency
        self.burst = burst
        self.keys = Keys(settings.namespace)
        self._tasks: list[asyncio.Task[Any]] = []
        self._main: asyncio.Task[Any] | None = None
        self.worker: JobwireWorker | None = None
        self.liveness = Liveness(settings.liveness_dir, settings.namespace, "worker")

    async def start(self) -> None:
        s = self.settings
        registry = load_job_types(s.job_modules)
        self.pool = await create_pool(s, max_size=max(4, self.concurrency // 2 + 2))
        # the group-committed transitions (every job's start, progress and completion) run only
        # jobstore statements, which leave no session state: their connections skip asyncpg's
        # reset, a round trip on every use (one per batch, and the start of a lone job waits for it)
        self.transitions_pool = await create_pool(s, max_size=TRANSITIONS_POOL_SIZE, reset=False)
        self.redis = create_redis(s)
        self.runtime = Runtime(
            s, self.pool, self.redis, self.keys, registry, transitions_pool=self.transitions_pool
        )

        async def run_job(ctx: dict[str, Any], job_id: str) -> None:
            await self.runtime.run(job_id, lease=ctx.get(LEASE_TOKEN), claimed_at=ctx.get(CLAIMED_AT))

        self.worker = JobwireWorker(
            functions=[func(run_job, name=ARQ_FUNCTION, max_tries=ARQ_MAX_TRIES)],
            queue_name=self.keys.queue,
            promote_key=self.keys.promote,
            wake_channel=self.keys.wake_channel,
            redis_pool=self.redis,
            burst=self.burst,
            handle_signals=False,
            max_jobs=self.concurrency,
            # the runtime enforces each job type's own timeout; ARQ's is only a backstop
            job_timeout=registry.max_timeout_s() + 60,
            keep_result=0,
            poll_delay=s.worker_poll_delay_s,
            max_tries=ARQ_MAX_TRIES,
            health_check_interval=60,
        )
        # a short lease, renewed by the heartbeat: see workers/heartbeat.py
        self.worker.in_progress_timeout_s = s.worker_lease_s
        self.worker.on_poll = self.liveness.beat
        heartbeat = Heartbeat(self.runtime, self.pool, self.redis, self.keys, lease_s=s.worker_lease_s)
        reconciler = Reconciler(self.pool, self.redis, self.keys, interval_s=s.reconcile_interval_s)
        purger = Purger(s, RetentionPolicy.from_settings(s, registry), self.redis, self.keys)
        scheduler = Scheduler(self.pool, self.redis, self.keys, registry=registry, poll_s=s.scheduler_poll_s)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(scheduler.run()),
            loop.create_task(heartbeat.run()),
            loop.create_task(reconciler.run()),
            loop.create_task(expiry.run(self.pool, self.redis, self.keys, interval_s=s.expiry_sweep_s)),
            loop.create_task(
                dependencies.run(self.pool, self.redis, self.keys, interval_s=s.dependency_sweep_s)
            ),
            loop.create_task(batches.run(self.pool, self.redis, self.keys, interval_s=s.batch_settle_s)),
            loop.create_task(purger.run()),
            loop.create_task(self.runtime.transitions.run()),
            loop.create_task(self.worker.finishes.run()),
            loop.create_task(self.worker.listen_for_wakes(s)),
        ]
        self._main = loop.create_task(self.worker.async_run())
        log.info(
            "worker started",
            namespace=s.namespace,
            concurrency=self.concurrency,
            job_types=registry.names(),
        )

    async def wait(self) -> None:
        """Until the worker ends by itself (burst mode: when the queue is empty)."""
        assert self._main is not None
        with contextlib.suppress(asyncio.CancelledError):
            await self._main

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking jobs, let running ones finish within the grace period, then hand the rest
        back to the queue (they run again on another worker) and exit."""
        if self.worker is None:
            return
        grace = self.settings.worker_grace_s if grace_s is None else grace_s
        worker, self.worker = self.worker, None
        worker.allow_pick_jobs = False
        self.liveness.clear()
        running = [t for t in worker.tasks.values() if not t.done()]
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        unfinished = [t for t in worker.tasks.values() if not t.done()]
        log.info("worker stopping", handing_back=len(unfinished))
        # cancelled jobs are released by the runtime (back to pending, to run elsewhere)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        worker.stopping = True
        background = [*self._tasks, *([self._main] if self._main else [])]
        for task in background:
            task.cancel()
        _, stuck = await asyncio.wait(background, timeout=5)
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            await self.redis.delete(worker.health_check_key)
        await self.redis.aclose()  # also ends a poll that absorbed its cancellation
        if stuck:
            await asyncio.wait(stuck, timeout=5)
        await self.pool.close()
        await self.transitions_pool.close()
        log.info("worker stopped")
