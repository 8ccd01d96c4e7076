"""Putting jobs on the ARQ queue, and publishing committed events.

jobwire writes ARQ's own job format (arq.jobs.serialize_job) but not through
`ArqRedis.enqueue_job`, which costs a WATCH round trip per job and cannot be batched: here any
number of jobs go out in one Lua call. `SET NX` + `ZADD NX` make the enqueue idempotent, so the
reconciler can repeat it for a job that is already queued or running without effect.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import orjson
from arq.jobs import serialize_job
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from jobwire.events import Message
from jobwire.job import Priority
from jobwire.keys import ARQ_FUNCTION, Keys

# ARQ pops jobs in score order (the run-at time in ms). A high-priority job is scored this far in
# the past, so it starts before every normal job queued less than ten years before it, and high jobs
# keep FIFO order among themselves.
HIGH_PRIORITY_LEAD_MS = 10 * 365 * 24 * 3600 * 1000

# ARQ refuses to start a job whose job key has expired; PostgreSQL is the truth and the reconciler
# would re-enqueue it anyway, but a generous TTL keeps long backlogs and long retry delays simple.
JOB_KEY_TTL_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class QueuedJob:
    id: UUID
    priority: str
    created_at: datetime
    # a delayed job's due time (None: due at once)
    run_at: datetime | None = None


def queued(row: Any, queued_at: datetime | None = None) -> QueuedJob:
    """The queue entry of a job row (id, priority, created_at, status, run_at): a scheduled job is
    due at its run_at, any other at `queued_at` (default: when it was created)."""
    run_at = row["run_at"] if row["status"] == "scheduled" else None
    return QueuedJob(row["id"], row["priority"], queued_at or row["created_at"], run_at)


def startable(rows: Iterable[Any], queued_at: datetime | None = None) -> list[QueuedJob]:
    """The queue entries of the rows a worker may start (pending or scheduled): a `waiting` job
    goes on the queue when its dependencies release it, a cancelled one never."""
    return [queued(r, queued_at) for r in rows if r["status"] in ("pending", "scheduled")]


def _ceil_ms(ts: datetime) -> int:
    """A time in ms, rounded up: a job scored so is never due before its time."""
    return -(-int(ts.timestamp() * 1_000_000) // 1000)


def score(job: QueuedJob, now: datetime | None = None) -> int:
    """Its queue score: the time it is due (ARQ pops in score order, and only scores up to now).

    A high job due now is scored ten years in the past, ahead of every normal job queued before it.
    A high job due later is scored at its time like a normal one (so nothing can pop it early), and
    listed in the promote set: the first poll at or after its time moves it into the high past
    (`POLL_LUA`), before that poll reads the queue, so it starts before the normal jobs due with it."""
    if job.run_at is not None and (now is None or job.run_at > now):
        return _ceil_ms(job.run_at)
    due_ms = _ceil_ms(job.run_at) if job.run_at is not None else int(job.created_at.timestamp() * 1000)
    return due_ms - HIGH_PRIORITY_LEAD_MS if job.priority == Priority.HIGH else due_ms


def promote_at(job: QueuedJob, now: datetime | None = None) -> int | None:
    """When a delayed high job's queue entry is to be moved into the high past (None: never)."""
    if job.priority == Priority.HIGH and job.run_at is not None and (now is None or job.run_at > now):
        return _ceil_ms(job.run_at)
    return None


# SET NX + ZADD NX for every job, then one PUBLISH for all their events: a batch of any size costs one
# command to encode and one round trip, where a pipeline of 3 commands per job spends most of its
# time packing commands in Python. KEYS: the queue, the promote set, then each job key; ARGV: the
# key TTL, the channel, the events message (or ""), the wake channel, the earliest due time of the
# jobs (ms; "" for none), then an (ARQ job id, score, payload, promote score or "") per job. A delayed
# high job enters the promote set only when its queue entry is new: an entry promoted already
# must not be promoted twice. The wake is published last, once per call whatever the number of
# jobs, so that an idle worker it wakes finds every job of the batch already queued.
_ENQUEUE_LUA = """
local ttl = ARGV[1]
for i = 3, #KEYS do
    local a = 6 + (i - 3) * 4
    redis.call('SET', KEYS[i], ARGV[a + 2], 'NX', 'PX', ttl)
    local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[a + 1], ARGV[a])
    if added == 1 and ARGV[a + 3] ~= '' then
        redis.call('ZADD', KEYS[2], ARGV[a + 3], ARGV[a])
    end
end
if ARGV[3] ~= '' then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
end
if ARGV[5] ~= '' then
    redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return #KEYS - 2
"""

# A worker's read of the queue, and its claim of what it has room for, in one call. KEYS: the
# queue, the promote set; ARGV: now (ms), offset, count, the high-priority lead (ms), then the claim:
# free slots, the lease (ms), a token unique to this claim, and ARQ's in-progress and job key
# prefixes. Delayed high jobs that are due move into the high past first; then up to `count` due
# jobs are read in score order, and the first `free` of them that run nowhere (no in-progress key:
# what ARQ's WATCH/MULTI checks) are claimed: the lease holds the claim's token. The reply: the
# claimed jobs as (id, score, payload) triples, the due ids read but not claimed for want of a slot
# (the worker claims them as slots free up), and the score of the next job not yet due ("" when
# none), which an idle worker sleeps until when it comes before its next poll. The per-job keys are
# built here from the ids read, as only this script knows them (ARQ's keys live on one server).
POLL_LUA = """
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(due) do
    local s = redis.call('ZSCORE', KEYS[1], id)
    if s then
        redis.call('ZADD', KEYS[1], 'XX', tonumber(s) - tonumber(ARGV[4]), id)
    end
    redis.call('ZREM', KEYS[2], id)
end
local read = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[3])
local free = tonumber(ARGV[5])
local claimed, rest = {}, {}
for i = 1, #read, 2 do
    local id = read[i]
    if free > 0 then
        local lease = ARGV[8] .. id
        if redis.call('EXISTS', lease) == 0 then
            redis.call('SET', lease, ARGV[7], 'PX', ARGV[6])
            claimed[#claimed + 1] = id
            claimed[#claimed + 1] = read[i + 1]
            claimed[#claimed + 1] = redis.call('GET', ARGV[9] .. id) or ''
            free = free - 1
        end
    else
        rest[#rest + 1] = id
    end
end
local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {claimed, rest, nxt[2] or ''}
"""


_ENQUEUE_SHA = hashlib.sha1(_ENQUEUE_LUA.encode()).hexdigest()


def _messages_payload(messages: Sequence[Message]) -> bytes:
    """One pub/sub payload: a single message as an object, several as a list."""
    if not messages:
        return b""
    return orjson.dumps(messages[0] if len(messages) == 1 else list(messages))


async def enqueue(
    redis: Redis,
    keys: Keys,
    jobs: Sequence[QueuedJob],
    messages: Iterable[Message] = (),
) -> None:
    """Enqueue `jobs`, publish event `messages` (`jobwire.events.message`) and wake idle workers,
    in one round trip."""
    now_ms = int(time.time() * 1000)
    now = datetime.now(UTC)
    due = [_ceil_ms(j.run_at) if j.run_at is not None and j.run_at > now else now_ms for j in jobs]
    job_keys: list[str] = [keys.queue, keys.promote]
    args: list[Any] = [
        JOB_KEY_TTL_MS,
        keys.events_channel,
        _messages_payload(list(messages)),
        keys.wake_channel,
        min(due) if due else "",
    ]
    for job in jobs:
        job_keys.append(keys.arq_job_key(job.id))
        promote = promote_at(job, now)
        args += [
            keys.arq_job_id(job.id),
            score(job, now),
            serialize_job(ARQ_FUNCTION, (str(job.id),), {}, None, now_ms),
            "" if promote is None else promote,
        ]
    try:
        await cast(Awaitable[Any], redis.evalsha(_ENQUEUE_SHA, len(job_keys), *job_keys, *args))
    except NoScriptError:  # once per server start: load it by sending it whole
        await cast(Awaitable[Any], redis.eval(_ENQUEUE_LUA, len(job_keys), *job_keys, *args))


async def dequeue(redis: Redis, keys: Keys, job_id: UUID) -> None:
    """Take a job that will never run (cancelled while pending) off the queue. Best effort: a worker
    that picks it up anyway finds it cancelled in PostgreSQL and does nothing."""
    async with redis.pipeline(transaction=True) as pipe:
        add_dequeue(pipe, keys, job_id)
        await pipe.execute()


def add_dequeue(pipe: Pipeline, keys: Keys, job_id: UUID) -> None:
    """`dequeue`, queued on a pipeline with other commands (many cancelled jobs in one round trip)."""
    pipe.zrem(keys.queue, keys.arq_job_id(job_id))
    pipe.zrem(keys.promote, keys.arq_job_id(job_id))
    pipe.delete(keys.arq_job_key(job_id))


async def move(redis: Redis, keys: Keys, job: QueuedJob) -> None:
    """Re-score a queued delayed job after its run time changed (PATCH), and wake idle workers for
    it. A job whose queue entry is missing is left to the reconciler, which enqueues it at the time
    PostgreSQL holds."""
    now = datetime.now(UTC)
    arq_id = keys.arq_job_id(job.id)
    promote = promote_at(job, now)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(keys.queue, {arq_id: score(job, now)}, xx=True)
        pipe.zrem(keys.promote, arq_id)
        if promote is not None:
            pipe.zadd(keys.promote, {arq_id: promote})
        pipe.publish(keys.wake_channel, score(job, now))
        await pipe.execute()


async def publish(redis: Redis, keys: Keys, messages: Iterable[Message]) -> None:
    """Publish committed events. A lost publish is repaired by replay from job_events, never by luck."""
    payload = _messages_payload(list(messages))
    if payload:
        await redis.publish(keys.events_channel, payload)


def add_publish(pipe: Pipeline, keys: Keys, messages: Iterable[Message]) -> None:
    """`publish`, queued on a pipeline with other commands."""
    payload = _messages_payload(list(messages))
    if payload:
        pipe.publish(keys.events_channel, payload)


async def missing_from_queue(redis: Redis, keys: Keys, job_ids: Sequence[UUID]) -> list[UUID]:
    """Which of these jobs have no ARQ job key (never enqueued, or Redis lost it)."""
    if not job_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(keys.arq_job_key(job_id))
        found = await pipe.execute()
    return [job_id for job_id, exists in zip(job_ids, found, strict=True) if not exists]
