"""The wrapper around every job function: status transitions, progress, timeouts, retries with
backoff, cancellation, and recovery of a job whose worker died.

ARQ delivers only a job id; everything else is read from PostgreSQL, the source of truth. Every
write is guarded by the run number this run's start was given (`jobs.runs`, which only grows), so a
run that was superseded (its lease expired and another worker took the job over, even if the job
was retried and started again since) can no longer change the job, and a re-run of a finished job
does nothing. A cancel request is honoured by the transitions themselves: a job whose cancel was
requested ends `cancelled` whether its run ends in a retry, a hand-back or a start.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import orjson
import structlog
from arq.worker import Retry
from pydantic import ValidationError
from redis.asyncio import Redis

from jobwire import db, dependencies, events, jobmetrics, jobstore
from jobwire.config import Settings
from jobwire.context import JobContext
from jobwire.errors import (
    InvalidParams,
    JobTimeout,
    PermanentError,
    ResultNotSerializable,
    UnknownJobType,
    WorkerLost,
    WorkerShutdown,
)
from jobwire.events import EventType
from jobwire.job import Status, error_info
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import add_publish, publish
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from jobwire.registry import JobType, Registry
from workers import leases
from workers.progress import ProgressReporter
from workers.transitions import Transitions

log = get_logger("jobwire.runtime")
T = TypeVar("T")

# a NUL character in JSON text (an escaped backslash before "u0000" is not one)
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

# How long a terminal write keeps trying while PostgreSQL is unreachable before the run gives up
# (the job then stays `running`, and the reconciler re-runs it once its lease is gone).
WRITE_PATIENCE_S = 30.0


@dataclass
class RunHandle:
    """A job function running on this worker, as the heartbeat sees it."""

    job_id: UUID
    run: int  # the job's `runs` number this run's start was given
    task: asyncio.Task[Any]
    lease: str | None = None  # the token of the ARQ claim it runs under (None: run without ARQ)
    cancel_requested: bool = False

    def cancel(self) -> None:
        self.cancel_requested = True
        self.task.cancel()


class _LeaseLost(Exception):
    """This run's ARQ claim no longer holds the job's lease: another claim does."""


class Runtime:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: Redis,
        keys: Keys,
        registry: Registry,
        *,
        transitions_pool: asyncpg.Pool | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.registry = registry
        self.runs: dict[UUID, RunHandle] = {}
        # starts, progress and completions of the jobs running at once share statements and round
        # trips (on a pool of their own when given one: see WorkerService)
        self.transitions = Transitions(transitions_pool or pool, redis, keys)

    # ---- plumbing ------------------------------------------------------------------------------

    async def _publish(self, row: jobstore.Row | None, event: EventType) -> None:
        if row is None:
            return
        # never ahead of the job's `started` event, which may still be on its way
        await self.transitions.started_published([row["id"]])
        try:
            if event not in (EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED):
                await publish(self.redis, self.keys, [events.message(row, event)])
                return
            duration = jobstore.run_duration_s(row) if event == EventType.COMPLETED else None
            # the last event and the job's counters in one round trip
            async with self.redis.pipeline(transaction=False) as pipe:
                add_publish(pipe, self.keys, [events.message(row, event)])
                jobmetrics.add_job_outcomes(pipe, self.keys, [(row["type"], event.value, duration)])
                await pipe.execute()
        except REDIS_UNAVAILABLE as exc:
            # live listeners catch up from job_events; the job itself must not suffer
            log.warning("event publish failed", error=str(exc), event_type=event.value)
        if event.terminal:
            # the jobs waiting for it are released or cancelled
            await dependencies.after_ended(self.pool, self.redis, self.keys, [row])

    async def _write(self, what: Callable[[], Awaitable[T]]) -> T:
        """Run a write, retrying while PostgreSQL is unreachable (a finished job's outcome is worth a
        wait; losing it would mean running the job again)."""
        deadline = time.monotonic() + WRITE_PATIENCE_S
        delay = 0.2
        while True:
            try:
                return await what()
            except db.UNAVAILABLE as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("database unavailable, retrying write", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _claimed(
        self,
        job_id: UUID,
        lease: str | None,
        what: Callable[[], Awaitable[T]],
        *,
        held_until: float = 0.0,
    ) -> T:
        """A write that starts the job or takes it over from a lost run: made (and retried, as
        `_write`) only while this claim still holds the job's ARQ lease, else _LeaseLost. Until
        `held_until` (time.monotonic()) the lease is known to be held without asking Redis (see
        `leases.held_until`)."""

        async def guarded() -> T:
            if lease is not None and time.monotonic() >= held_until and not await self._holds(job_id, lease):
                raise _LeaseLost
            return await what()

        return await self._write(guarded)

    async def _holds(self, job_id: UUID, lease: str) -> bool:
        try:
            return await leases.hold(self.redis, self.keys, str(job_id), lease, self.settings.worker_lease_s)
        except REDIS_UNAVAILABLE as exc:
            log.warning("cannot check the job's lease", error=str(exc))
            return False

    # ---- the run -------------------------------------------------------------------------------

    async def run(
        self, job_id_text: str, *, lease: str | None = None, claimed_at: float | None = None
    ) -> None:
        """Run the job an ARQ claim was given; `lease` is the claim's token, checked before the job
        is started or taken over (workers/leases.py), and `claimed_at` when (time.monotonic()) the
        claim was asked for, if known."""
        held_until = (
            0.0 if claimed_at is None else leases.held_until(claimed_at, self.settings.worker_lease_s)
        )
        try:
            await self._run_claimed(UUID(job_id_text), lease, held_until)
        except _LeaseLost:
            # it stays queued, and its lease, job key and queue entry are the holder's to finish
            log.info("claim lapsed before the job started: another worker holds it", job=job_id_text)
            raise Retry() from None

    async def _run_claimed(self, job_id: UUID, lease: str | None, held_until: float) -> None:
        if not self.settings.tenant_max_running:
            # nearly every job is simply pending: start it without reading it first (one round
            # trip less, shared with the other jobs starting now); anything else is sorted out
            # below from the row
            started = await self._claimed(
                job_id, lease, lambda: self.transitions.start_pending(job_id), held_until=held_until
            )
            if started is not None:
                if started["status"] == Status.CANCELLED:  # its cancel was pending: now done
                    return
                self._bind(started)
                try:
                    await self._execute(started, lease)
                finally:
                    self._unbind()
                return
        row = await self._write(lambda: jobstore.get_job(self.pool, job_id, None))
        if row is None:
            log.warning("job not found, dropping it from the queue", job=str(job_id))
            return
        self._bind(row)
        try:
            await self._run(row, lease)
        finally:
            self._unbind()

    @staticmethod
    def _bind(row: jobstore.Row) -> None:
        structlog.contextvars.bind_contextvars(job_id=str(row["id"]), tenant=row["tenant"], type=row["type"])

    @staticmethod
    def _unbind() -> None:
        structlog.contextvars.unbind_contextvars("job_id", "tenant", "type", "attempt")

    async def _run(self, row: jobstore.Row, lease: str | None) -> None:
        job_id: UUID = row["id"]
        status = Status(row["status"])
        if status.terminal:
            log.info("job already finished, nothing to do", status=status.value)
            return
        if status == Status.SCHEDULED:
            early_s = (row["run_at"] - datetime.now(UTC)).total_seconds()
            if early_s > 0:
                # the queue offered it before its time (a score Redis got wrong, or a move the
                # queue has not seen): it stays queued, re-scored to its time, and never starts early
                log.warning("delayed job offered before its time, deferring", early_s=round(early_s, 3))
                raise Retry(defer=early_s + 0.001)
        if status == Status.RUNNING:
            # ARQ hands a running job out again only after its lease expired: the worker that ran
            # it is gone (or cut off). Its attempt counts; the job goes on if budget remains.
            recovered = await self._recover_lost(row, lease)
            if recovered is None:
                return
            row = recovered

        cap = self.settings.tenant_max_running
        if cap:
            room, started = await self._claimed(
                job_id, lease, lambda: jobstore.start_within_cap(self.pool, job_id, row["tenant"], cap)
            )
            if not room:
                # stays pending, its attempt unspent; ARQ offers it again shortly
                log.info("tenant at its running cap, deferring", cap=cap)
                raise Retry(defer=self.settings.tenant_cap_retry_s)
        else:
            started = await self._claimed(job_id, lease, lambda: jobstore.start_pending(self.pool, job_id))
        if started is None:
            log.info("job changed before it could start (cancelled, or started elsewhere)")
            return
        event = jobstore.event_written(started, EventType.STARTED)
        await self._publish(started, event)
        if event == EventType.CANCELLED:
            log.info("job cancelled before it started")
            return
        await self._execute(started, lease)

    async def _execute(self, started: jobstore.Row, lease: str | None) -> None:
        """Run a job this worker has just started (its `started` event published), and record how
        it ended."""
        job_id: UUID = started["id"]
        attempt: int = started["attempts"]
        run: int = started["runs"]
        max_attempts: int = started["max_attempts"]
        structlog.contextvars.bind_contextvars(attempt=attempt)
        # per job at debug: at info, two lines a job cost the drain far more than the job itself; info
        # keeps what needs a look (failures, retries, cancels, lost workers)
        log.debug("job started", max_attempts=max_attempts)

        jt = self.registry.get(started["type"])
        reporter = ProgressReporter(
            lambda update: self.transitions.progress(job_id, run, update), self.settings.progress_interval_s
        )
        handle: RunHandle | None = None
        t0 = time.monotonic()
        try:
            results = {}
            if started["depends_on"]:
                results = await jobstore.dependency_results(self.pool, started["depends_on"])
            fn_task = self._start_function(jt, started, attempt, max_attempts, reporter, results)
            handle = RunHandle(job_id, run, fn_task, lease)
            self.runs[job_id] = handle
            try:
                timeout_s = jt.timeout_s if jt else 0
                async with asyncio.timeout(timeout_s) as deadline:
                    result = await fn_task
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise JobTimeout(f"the job ran longer than its {timeout_s:g}s timeout") from None
            finally:
                self.runs.pop(job_id, None)
            if handle.cancel_requested:  # the function swallowed the cancellation
                raise asyncio.CancelledError
            try:
                encoded = orjson.dumps(result)
            except TypeError as exc:
                raise ResultNotSerializable(f"the job returned a value that is not JSON: {exc}") from exc
            if _JSON_NUL.search(encoded):
                # PostgreSQL's jsonb cannot hold it: fail the job now rather than fail its write
                raise ResultNotSerializable("the job returned a string with a NUL character")
            result_json = orjson.loads(encoded)
        except asyncio.CancelledError:
            if handle is not None and handle.cancel_requested:
                await reporter.close(flush=True)
                done = await self._write(lambda: jobstore.cancelled_by_worker(self.pool, job_id, run))
                await self._publish(done, EventType.CANCELLED)
                log.info("job cancelled", duration_s=round(time.monotonic() - t0, 3))
                return
            # the worker is shutting down: hand the job back, it runs again elsewhere
            await asyncio.shield(self._release(job_id, run, reporter))
            raise
        except Exception as exc:
            await reporter.close(flush=True)
            await self._failed(job_id, run, attempt, max_attempts, jt, exc, time.monotonic() - t0)
            return

        # the last progress not yet written goes with the completion, in its transaction
        last = await reporter.last()
        done = await self._write(lambda: self.transitions.complete(job_id, run, result_json, last))
        if done is None:
            log.warning("job result discarded: the job changed while it ran (superseded run)")
            return
        log.debug("job completed", duration_s=round(time.monotonic() - t0, 3))

    def _start_function(
        self,
        jt: JobType | None,
        row: jobstore.Row,
        attempt: int,
        max_attempts: int,
        reporter: ProgressReporter,
        dependency_results: dict[UUID, Any],
    ) -> asyncio.Task[Any]:
        if jt is None:
            raise UnknownJobType(f"job type {row['type']!r} is not registered on this worker")
        try:
            params = jt.params_model.model_validate(row["params"])
        except ValidationError as exc:
            raise InvalidParams(f"stored params no longer validate: {exc}") from exc
        ctx = JobContext(
            job_id=row["id"],
            type=row["type"],
            tenant=row["tenant"],
            attempt=attempt,
            max_attempts=max_attempts,
            db=self.pool,
            log=log.bind(job_type=jt.name),
            _report=reporter.report,
            dependency_results=dependency_results,
        )
        # its own task, so that a cancel request can interrupt the function and nothing else
        return asyncio.get_running_loop().create_task(jt.fn(ctx, params))

    async def _failed(
        self,
        job_id: UUID,
        run: int,
        attempt: int,
        max_attempts: int,
        jt: JobType | None,
        exc: Exception,
        duration_s: float,
    ) -> None:
        error = error_info(exc)
        permanent = isinstance(exc, PermanentError)
        if not permanent and attempt < max_attempts and jt is not None:
            delay = jt.backoff.delay(attempt)
            row = await self._write(lambda: jobstore.schedule_retry(self.pool, job_id, run, error))
            if row is None:
                return
            if jobstore.event_written(row, EventType.RETRYING) == EventType.CANCELLED:
                # its cancel was requested while it ran: the retry became the cancel
                await self._publish(row, EventType.CANCELLED)
                log.info("job failed after its cancel was requested: cancelled", error=error)
                return
            await self._publish(row, EventType.RETRYING)
            log.warning("job failed, will retry", error=error, retry_in_s=round(delay, 2))
            # ARQ keeps the job queued and re-scores it `delay` seconds from now
            raise Retry(defer=delay)
        row = await self._write(lambda: jobstore.fail(self.pool, job_id, run, error))
        await self._publish(row, EventType.FAILED)
        if isinstance(exc, PermanentError | JobTimeout):
            log.warning("job failed", error=error, duration_s=round(duration_s, 3))
        else:
            log.error("job failed", error=error, duration_s=round(duration_s, 3), exc_info=exc)

    async def _release(self, job_id: UUID, run: int, reporter: ProgressReporter) -> None:
        await reporter.close(flush=True)
        error = error_info(WorkerShutdown("the worker shut down before the job finished; it will run again"))
        try:
            row = await jobstore.release(self.pool, job_id, run, error)
        except db.UNAVAILABLE as exc:
            log.warning("could not release job; it runs again when its lease expires", error=str(exc))
            return
        if row is None:
            return
        event = jobstore.event_written(row, EventType.RETRYING)
        await self._publish(row, event)
        log.info("job cancelled on shutdown" if event == EventType.CANCELLED else "job released on shutdown")

    async def _recover_lost(self, row: jobstore.Row, lease: str | None) -> jobstore.Row | None:
        job_id: UUID = row["id"]
        attempt: int = row["attempts"]
        run: int = row["runs"]  # the lost run's number: what its own writes would have carried
        if row["cancel_requested"]:
            done = await self._claimed(
                job_id, lease, lambda: jobstore.cancelled_by_worker(self.pool, job_id, run)
            )
            await self._publish(done, EventType.CANCELLED)
            return None
        error = error_info(WorkerLost(f"the worker running attempt {attempt} stopped responding"))
        if attempt >= row["max_attempts"]:
            failed = await self._claimed(job_id, lease, lambda: jobstore.fail(self.pool, job_id, run, error))
            await self._publish(failed, EventType.FAILED)
            log.warning("job lost its worker on its last attempt", attempt=attempt)
            return None
        pending = await self._claimed(
            job_id, lease, lambda: jobstore.schedule_retry(self.pool, job_id, run, error)
        )
        if pending is None:
            return None
        event = jobstore.event_written(pending, EventType.RETRYING)
        await self._publish(pending, event)
        if event == EventType.CANCELLED:  # a cancel was requested since the row was read
            return None
        log.warning("job lost its worker, running it again", attempt=attempt)
        return pending
