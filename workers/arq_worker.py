"""jobwire's ARQ worker: ARQ's poll loop, queue and keys, with jobs claimed and finished in batches.

ARQ's own `Worker` spends five Redis round trips per job before the job function runs (WATCH,
EXISTS, ZSCORE, MULTI/EXEC to take the in-progress lease, then a pipeline reading the job) and one
after it, each a few tens of µs of the worker's CPU: at a few hundred short jobs a second that
alone keeps a core busy. Here every job that fits in the free slots is claimed by one Lua call (the
same checks and lease, atomically, and the job's payload read in the same call), and the jobs that
end together are finished by one more. Keys, scores, leases and the queue are ARQ's, unchanged, so
`enqueue_job`, ARQ's tools and a worker of either kind see the same queue.

What jobwire does not use is left out: ARQ's retry counter (attempts are counted in PostgreSQL),
results in Redis (`keep_result=0`), aborts and cron jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import SerializationError, deserialize_job_raw
from arq.utils import timestamp_ms
from arq.worker import Retry, Worker
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from jobwire.batching import Batcher
from jobwire.config import Settings
from jobwire.logs import get_logger
from jobwire.queue import HIGH_PRIORITY_LEAD_MS, POLL_LUA
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from jobwire.redis_client import create_redis

log = get_logger("jobwire.worker")

# KEYS: the queue, then per job its in-progress key and its job key; ARGV: now (ms), the lease
# (ms), a token unique to this claim, then the job ids. A job is claimed when it is still queued,
# due, and not running anywhere (what ARQ's WATCH/MULTI checks); the lease holds the claim's token.
# The reply lists (id, score, payload) for each claimed job.
_CLAIM_LUA = """
local now = tonumber(ARGV[1])
local out = {}
for i = 4, #ARGV do
    local k = 2 + (i - 4) * 2
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) <= now and redis.call('EXISTS', KEYS[k]) == 0 then
        redis.call('SET', KEYS[k], ARGV[3], 'PX', ARGV[2])
        out[#out + 1] = ARGV[i]
        out[#out + 1] = score
        out[#out + 1] = redis.call('GET', KEYS[k + 1]) or ''
    end
end
return out
"""

# KEYS: the queue, then per job its in-progress, job and retry keys; ARGV: the wake channel, then
# per job its id, how it ended: DONE (off the queue), AGAIN (stays queued as it is) or a number of
# ms to push its score by (ARQ's Retry(defer=...)), and the token of the claim that ran it. The
# lease is released, as ARQ's finish_job does, unless it now holds another claim's token: then this
# run's lease lapsed and another worker holds the job (it may be running it right now), so its
# lease, job key and queue entry are that worker's to finish, and this one touches nothing. A job
# left queued (handed back, deferred) wakes the idle workers, once per call: one may take it now,
# or sleep until its new time rather than until its next poll.
_FINISH_LUA = """
local wake = false
for i = 2, #ARGV, 3 do
    local k = 2 + (i - 2) / 3 * 3
    local holder = redis.call('GET', KEYS[k])
    if not holder or holder == ARGV[i + 2] then
        redis.call('DEL', KEYS[k])
        local how = ARGV[i + 1]
        if how == 'done' then
            redis.call('DEL', KEYS[k + 1], KEYS[k + 2])
            redis.call('ZREM', KEYS[1], ARGV[i])
        else
            if how ~= 'again' then
                redis.call('ZINCRBY', KEYS[1], how, ARGV[i])
            end
            wake = true
        end
    end
end
if wake then
    redis.call('PUBLISH', ARGV[1], '')
end
return (#ARGV - 1) / 3
"""

DONE = "done"
AGAIN = "again"
LEASE_TOKEN = "lease_token"  # the ctx entry holding the claim's token
CLAIMED_AT = "claimed_at"  # the ctx entry holding when (time.monotonic()) the claim was asked for

Claimed = tuple[
    str, int, bytes, str, float
]  # ARQ job id, score, payload (b"" when the job key is gone), claim token, claimed at (monotonic)
Finish = tuple[str, str, str]  # ARQ job id, how it ended, claim token


class JobwireWorker(Worker):
    stopping = False

    def __init__(self, *, promote_key: str, wake_channel: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.finishes: Batcher[Finish, None] = Batcher(self._flush_finishes)
        self._slot_freed = asyncio.Event()
        self.promote_key = promote_key
        self.wake_channel = wake_channel
        # The poll sleeps here, not in ARQ's loop (whose delay becomes 0): an idle worker sleeps
        # until its next poll or the next delayed job's time, whichever comes first, and a wake
        # message ends the sleep at once. Every enqueue publishes one (once per batch of jobs, see
        # jobwire/queue.py), and so does a job handed back or deferred: a job reaches an idle worker
        # as soon as it is queued, and a delayed one on time. The poll is only the fallback, for
        # what announces itself to nobody (a dead worker's lease running out, a wake lost while
        # the subscription was down), so it can be long.
        self.idle_poll_s = self.poll_delay_s
        self.poll_delay_s = 0
        self._wake = asyncio.Event()
        self._claimed = 0  # jobs the current poll claimed
        # called after every poll that reached Redis (the worker's liveness: see jobwire/liveness.py)
        self.on_poll: Callable[[], None] = lambda: None

    async def _poll_iteration(self) -> None:
        # ARQ's loop has no stop flag of its own, and a cancellation that lands inside a Redis call
        # can be absorbed by the client: check ours on every turn.
        if self.stopping:
            raise asyncio.CancelledError
        # A wake that comes while this poll runs may announce a job the poll's read has just missed:
        # clear the flag before the read, never after it, so such a wake makes the next turn poll
        # at once instead of being lost until the fallback poll.
        self._wake.clear()
        self._claimed = 0
        # ARQ lets a Redis error end the worker; a job service should ride out a Redis restart.
        try:
            next_due_ms = await self._poll_once()
        except REDIS_UNAVAILABLE as exc:
            if self.stopping:
                raise asyncio.CancelledError from exc
            log.warning("redis unavailable, retrying", error=str(exc))
            await asyncio.sleep(1)
            return
        self.on_poll()
        await self._idle(next_due_ms)

    async def _poll_once(self) -> int | None:
        """ARQ's poll iteration, reading the queue with POLL_LUA (promotions of due high delayed
        jobs, the due jobs, a claim of as many as there are free slots, and the next due time, in
        one call); returns that next due time (ms)."""
        next_due_ms: int | None = None
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            count = min(self.max_burst_jobs - self._jobs_started(), count)
            if count < 1:
                return None
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            free = self.max_jobs - self.job_counter
            if self.burst and self.max_burst_jobs >= 0:
                free = min(free, count)
            for _ in range(free):
                await self.sem.acquire()  # never waits: see start_jobs
            token = uuid.uuid4().hex
            claimed_at = time.monotonic()  # before the call: its leases are no older than this
            try:
                claimed, rest, next_due = await eval_script(
                    self.pool,
                    POLL_LUA,
                    [self.queue_name, self.promote_key],
                    [
                        timestamp_ms(),
                        self._queue_read_offset,
                        count,
                        HIGH_PRIORITY_LEAD_MS,
                        free,
                        int(self.in_progress_timeout_s * 1000),
                        token,
                        in_progress_key_prefix,
                        job_key_prefix,
                    ],
                )
            except BaseException:
                for _ in range(free):
                    self.sem.release()
                raise
            next_due_ms = int(float(next_due)) if next_due else None
            self._start_claimed(_claims(claimed, token, claimed_at), free)
            await self.start_jobs(rest)
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # ARQ's way of surfacing an error of run_job
        await self.heart_beat()
        return next_due_ms

    async def _idle(self, next_due_ms: int | None) -> None:
        """Wait for a reason to read the queue again."""
        if self._claimed:
            # this read found work, so more may be queued behind it (the claims already waited
            # for their slots): read again at once, as ARQ's loop would after a full read
            return
        if self.allow_pick_jobs and self.job_counter >= self.max_jobs:
            # every slot taken, so the poll did not read the queue: read it when a job ends
            self._slot_freed.clear()
            if self.job_counter >= self.max_jobs:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), self.idle_poll_s)
            return
        delay = self.idle_poll_s
        if next_due_ms is not None:
            delay = min(delay, max(0.0, (next_due_ms - timestamp_ms()) / 1000))
        if delay <= 0 or self._wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def listen_for_wakes(self, redis: str | Settings) -> None:
        """End the idle sleep when a job is queued, handed back, deferred, or a delayed one moved.
        A busy worker pays one message per enqueued batch, not per job: the message only sets a
        flag. Without the subscription (Redis down) the worker still polls."""
        # its own connection, with no read timeout: it blocks until a message comes
        subscriber: Redis = create_redis(redis, socket_timeout=None)
        try:
            while not self.stopping:
                try:
                    async with subscriber.pubsub(ignore_subscribe_messages=True) as pubsub:
                        await pubsub.subscribe(self.wake_channel)
                        while True:
                            if await pubsub.get_message(timeout=None) is not None:
                                self._wake.set()
                except REDIS_UNAVAILABLE as exc:
                    log.warning("wake subscription lost, polling only", error=str(exc))
                    await asyncio.sleep(1)
        finally:
            await subscriber.aclose()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim and start the polled jobs, as many at a time as there are free slots."""
        pending = [job_id.decode() for job_id in job_ids]
        while pending:
            # wait until a job ends (ARQ's semaphore holds max_jobs + 1, so it cannot be what
            # waits), then take every free slot at once
            while self.job_counter >= self.max_jobs and self.allow_pick_jobs and not self.stopping:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            if not self.allow_pick_jobs or self.stopping:
                return
            slots = min(len(pending), self.max_jobs - self.job_counter)
            for _ in range(slots):
                await self.sem.acquire()  # never waits: see above
            batch, pending = pending[:slots], pending[slots:]
            try:
                claimed = await self._claim(batch)
            except BaseException:
                for _ in range(slots):
                    self.sem.release()
                raise
            self._start_claimed(claimed, slots)

    def _start_claimed(self, claimed: list[Claimed], slots: int) -> None:
        """Run the claimed jobs, in `slots` slots of ARQ's semaphore taken for the claim."""
        for _ in range(slots - len(claimed)):  # started elsewhere, finished, or not yet due
            self.sem.release()
        self._claimed += len(claimed)
        for job_id, score, payload, token, claimed_at in claimed:
            self.job_counter += 1
            task = self.loop.create_task(self._run_claimed(job_id, score, payload, token, claimed_at))
            task.add_done_callback(self._job_ended)
            self.tasks[job_id] = task

    def _job_ended(self, _: asyncio.Task[None]) -> None:
        self._release_sem_dec_counter_on_complete()
        self._slot_freed.set()
        if self.burst:
            # a burst worker ends when the queue is empty, which a finished job may have made it:
            # look now rather than at the next poll
            self._wake.set()

    async def _claim(self, job_ids: Sequence[str]) -> list[Claimed]:
        keys: list[str] = [self.queue_name]
        for job_id in job_ids:
            keys += [in_progress_key_prefix + job_id, job_key_prefix + job_id]
        token = uuid.uuid4().hex
        args: list[Any] = [timestamp_ms(), int(self.in_progress_timeout_s * 1000), token, *job_ids]
        claimed_at = time.monotonic()  # before the call: its leases are no older than this
        return _claims(await eval_script(self.pool, _CLAIM_LUA, keys, args), token, claimed_at)

    async def _run_claimed(
        self, job_id: str, score: int, payload: bytes, token: str, claimed_at: float
    ) -> None:
        how = DONE
        try:
            how = await self._call(job_id, score, payload, token, claimed_at)
        except asyncio.CancelledError:
            # the worker is stopping: the job stays queued and runs again on another worker
            how = AGAIN
            self.jobs_retried += 1
            raise
        finally:
            try:
                await asyncio.shield(self.finishes.submit((job_id, how, token)))
                if how not in (DONE, AGAIN):
                    # re-scored (a retry's backoff, a delayed job offered early): the next due
                    # time the worker sleeps until may have changed
                    self._wake.set()
            except REDIS_UNAVAILABLE as exc:
                # the lease expires by itself; whoever takes the job again finds it finished in
                # PostgreSQL and does nothing
                log.warning("could not finish the job in redis", error=str(exc), arq_job_id=job_id)

    async def _call(self, job_id: str, score: int, payload: bytes, token: str, claimed_at: float) -> str:
        """Run the job's function; how the job leaves the queue."""
        if not payload:
            log.warning("job key missing (expired), dropping the queue entry", arq_job_id=job_id)
            self.jobs_failed += 1
            return DONE
        try:
            name, args, kwargs, _, _ = deserialize_job_raw(payload, deserializer=self.job_deserializer)
        except SerializationError:
            log.exception("cannot read the job, dropping it", arq_job_id=job_id)
            self.jobs_failed += 1
            return DONE
        function = self.functions.get(name)
        if function is None:
            log.warning("no such function, dropping the job", arq_job_id=job_id, function=name)
            self.jobs_failed += 1
            return DONE
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        # the claim's token and time: the runtime checks the claim still holds the lease before it
        # starts the job (workers/leases.py)
        ctx = {**self.ctx, "job_id": job_id, "score": score, LEASE_TOKEN: token, CLAIMED_AT: claimed_at}
        try:
            async with asyncio.timeout(timeout_s):
                await function.coroutine(ctx, *args, **kwargs)
        except Retry as exc:
            self.jobs_retried += 1
            if not exc.defer_score:
                return AGAIN
            # ARQ's rule: due `defer` from now
            return str(exc.defer_score + timestamp_ms() - score)
        except Exception:
            log.exception("job function failed", arq_job_id=job_id)
            self.jobs_failed += 1
            return DONE
        self.jobs_complete += 1
        return DONE

    async def _flush_finishes(self, finishes: Sequence[Finish]) -> list[None]:
        keys: list[str] = [self.queue_name]
        args: list[str] = [self.wake_channel]
        for job_id, how, token in finishes:
            keys += [in_progress_key_prefix + job_id, job_key_prefix + job_id, retry_key_prefix + job_id]
            args += [job_id, how, token]
        await eval_script(self.pool, _FINISH_LUA, keys, args)
        return [None] * len(finishes)


def _claims(reply: list[bytes], token: str, claimed_at: float) -> list[Claimed]:
    """The claimed jobs of a claim's reply: (id, score, payload) triples."""
    return [
        (reply[i].decode(), int(float(reply[i + 1])), reply[i + 2], token, claimed_at)
        for i in range(0, len(reply), 3)
    ]


@functools.cache
def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


async def eval_script(redis: Any, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Run a Lua script by its SHA, sending it whole only when the server does not know it yet."""
    try:
        return await cast(Awaitable[Any], redis.evalsha(_sha(script), len(keys), *keys, *args))
    except NoScriptError:  # once per server start: load it by sending it whole
        return await cast(Awaitable[Any], redis.eval(script, len(keys), *keys, *args))
