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
from datetime import datetime
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


def score(job: QueuedJob) -> int:
    created_ms = int(job.created_at.timestamp() * 1000)
    return created_ms - HIGH_PRIORITY_LEAD_MS if job.priority == Priority.HIGH else created_ms


# SET NX + ZADD NX for every job, then one PUBLISH for all their events: a batch of any size costs one
# command to encode and one round trip, where a pipeline of 3 commands per job spends most of its
# time packing commands in Python. KEYS: the queue, then each job key; ARGV: the key TTL, the
# channel, the events message (or ""), then an (ARQ job id, score, payload) triple per job.
_ENQUEUE_LUA = """
local ttl = ARGV[1]
for i = 2, #KEYS do
    local a = 4 + (i - 2) * 3
    redis.call('SET', KEYS[i], ARGV[a + 2], 'NX', 'PX', ttl)
    redis.call('ZADD', KEYS[1], 'NX', ARGV[a + 1], ARGV[a])
end
if ARGV[3] ~= '' then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return #KEYS - 1
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
    """Enqueue `jobs` and publish event `messages` (`jobwire.events.message`), in one round trip."""
    now_ms = int(time.time() * 1000)
    job_keys: list[str] = [keys.queue]
    args: list[Any] = [JOB_KEY_TTL_MS, keys.events_channel, _messages_payload(list(messages))]
    for job in jobs:
        job_keys.append(keys.arq_job_key(job.id))
        args += [
            keys.arq_job_id(job.id),
            score(job),
            serialize_job(ARQ_FUNCTION, (str(job.id),), {}, None, now_ms),
        ]
    try:
        await cast(Awaitable[Any], redis.evalsha(_ENQUEUE_SHA, len(job_keys), *job_keys, *args))
    except NoScriptError:  # once per server start: load it by sending it whole
        await cast(Awaitable[Any], redis.eval(_ENQUEUE_LUA, len(job_keys), *job_keys, *args))


async def dequeue(redis: Redis, keys: Keys, job_id: UUID) -> None:
    """Take a job that will never run (cancelled while pending) off the queue. Best effort: a worker
    that picks it up anyway finds it cancelled in PostgreSQL and does nothing."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.queue, keys.arq_job_id(job_id))
        pipe.delete(keys.arq_job_key(job_id))
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
