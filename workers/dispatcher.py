"""The webhook dispatcher (`jobwire dispatcher`): leases due deliveries from PostgreSQL, POSTs them
signed in the Standard Webhooks format, and records every attempt.

- Deliveries are leased with SKIP LOCKED, so any number of dispatchers can run side by side; the
  lease outlasts an attempt's deadline, and a dispatcher that dies mid-attempt leaves its deliveries
  due again when the lease ends (at-least-once: the receiver may see a duplicate, always with the
  same webhook-id).
- A notification on each committed delivery wakes the dispatcher at once; otherwise it sleeps until
  the next retry comes due.
- Each attempt has a total deadline and reads a bounded part of the answer; redirects are not
  followed; the address dialled is checked again (DNS rebinding).
- Attempts in flight are capped per destination, so one slow receiver cannot take every slot.
- Outcomes are written in batches: one statement records many attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import asyncpg
import orjson
from redis.asyncio import Redis

from jobwire import db, jobmetrics
from jobwire.config import Settings
from jobwire.job import iso, job_view
from jobwire.keys import Keys
from jobwire.liveness import Liveness
from jobwire.logs import get_logger
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from jobwire.redis_client import create_redis
from jobwire.webhooks import signing, ssrf
from jobwire.webhooks import store as webhookstore
from jobwire.webhooks.retry import Response, decide, retry_after_s
from jobwire.webhooks.store import Outcome

log = get_logger("jobwire.dispatcher")

NOTIFY_CHANNEL = "jobwire_deliveries"
USER_AGENT = "jobwire-webhooks/1"
ERROR_SNIPPET = 200  # characters of a failed answer's body kept in last_error
# when deliveries are due but none could be leased (their destinations are at their cap), look again
# this soon even if no attempt finishes first
BLOCKED_RECHECK_S = 0.25
CLAIM_COALESCE_S = 0.005
# Deliveries leased ahead of the attempts in flight, as a multiple of the caps: while the next claim
# runs, the receivers keep getting work instead of waiting for the database.
PREFETCH = 2
CLOSE_TIMEOUT_S = 5.0
_TIMESTAMPS = ("created_at", "started_at", "finished_at", "updated_at", "run_at", "expires_at")


def render_body(event_type: str, job: dict[str, Any]) -> bytes:
    """The body of a delivery, from the job as it was right after the event (a `to_jsonb` of the
    row), or for a batch's webhook (`batch.*`) the batch representation it settled with. The same
    delivery always renders the same bytes."""
    if event_type.startswith("batch."):
        return orjson.dumps({"type": event_type, "timestamp": job["finished_at"], "data": job})
    row = dict(job)
    for column in _TIMESTAMPS:
        if row.get(column) is not None:
            row[column] = datetime.fromisoformat(row[column])
    return orjson.dumps(
        {"type": event_type, "timestamp": iso(row["updated_at"]), "data": job_view(row, events_token=None)}
    )


class Dispatcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.rng = random.Random()
        self.lease = uuid4()  # this process's lease token
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._redis: Redis | None = None
        self._http: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        # Shutdown is cooperative: stop() sets these flags and wakes each loop, which then ends by
        # itself; its cancel only cuts a wait short. A cancel alone is not enough: on Python 3.11
        # asyncio.wait_for returns the result instead of raising when the cancel lands just as the
        # awaited operation completes (redis-py awaits every socket write that way), and a loop
        # that absorbed its cancel would otherwise wait forever.
        self._stopping = asyncio.Event()  # no more leasing, no more listening
        self._recording = True  # the writer's; cleared once the attempts in flight are over
        self._listener_lost: asyncio.Event | None = None  # the listener's current wait
        # every leased delivery, attempted or waiting for a slot, and their count per destination
        self._inflight: dict[UUID, asyncio.Task[None]] = {}
        self._per_destination: Counter[str] = Counter()
        # the slots: attempts actually in flight, in all and per destination
        self._sending = asyncio.Semaphore(settings.webhook_concurrency)
        self._destination_slots: dict[str, asyncio.Semaphore] = {}
        self._outcomes: list[tuple[Outcome, str | None]] = []
        self._outcomes_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.liveness = Liveness(settings.liveness_dir, settings.namespace, "dispatcher")

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._pool = await db.create_pool(s, max_size=4)
        self._redis = create_redis(s)
        connector = aiohttp.TCPConnector(
            limit=s.webhook_concurrency,
            resolver=None if s.webhook_allow_private else ssrf.GuardedResolver(),
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # nothing carried from one receiver to another
            headers={"User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=None),  # the attempt's own deadline covers it all
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen()),
            loop.create_task(self._claim_loop()),
            loop.create_task(self._write_loop()),
        ]
        log.info("dispatcher ready", lease=str(self.lease), concurrency=s.webhook_concurrency)

    async def stop(self) -> None:
        """Stop leasing, let attempts in flight finish (each has a deadline), record them, and hand
        back anything not attempted."""
        self._stopping.set()
        self._wake.set()
        if self._listener_lost is not None:
            self._listener_lost.set()
        self.liveness.clear()
        listener, claimer, writer = self._tasks or (None, None, None)
        for task in (claimer, listener):
            if task is not None:
                await _end(task)
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=self.settings.webhook_timeout_s + 1)
        unfinished = list(self._inflight)
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if writer is not None:
            self._recording = False
            self._outcomes_ready.set()
            await _end(writer)
        try:
            await self._flush()
            if unfinished and self._pool is not None:
                await webhookstore.release(self._pool, self.lease, unfinished)
        except db.UNAVAILABLE as exc:  # the leases run out by themselves
            log.warning("could not record the last attempts", error=repr(exc))
        # every close is bounded: a shutdown must end even when a server stopped answering
        if self._http is not None:
            await _bounded(self._http.close(), "http session")
        if self._listener is not None:
            await _bounded(self._listener.close(timeout=CLOSE_TIMEOUT_S), "listener")
            self._listener.terminate()
        if self._redis is not None:
            await _bounded(self._redis.aclose(), "redis")
        if self._pool is not None and not await _bounded(self._pool.close(), "database pool"):
            self._pool.terminate()
        log.info("dispatcher stopped", released=len(unfinished))

    # ---- waking ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Hold a LISTEN connection, reconnecting after PostgreSQL outages."""
        while not self._stopping.is_set():
            # set when the connection ends, or by stop()
            lost = self._listener_lost = asyncio.Event()
            try:
                # a LISTEN belongs to a session: never through a transaction pooler
                self._listener = await db.connect(self.settings, direct=True)
                self._listener.add_termination_listener(lambda _, lost=lost: lost.set())
                await self._listener.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
                self._wake.set()  # deliveries may have committed while nobody listened
                await lost.wait()
                if self._stopping.is_set():
                    return
                log.warning("notification listener lost, reconnecting")
            except db.UNAVAILABLE as exc:
                log.warning("notification listener could not connect, retrying", error=repr(exc))
            await asyncio.sleep(1)

    # ---- leasing -----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._pool is not None
        s = self.settings
        while not self._stopping.is_set():
            self._wake.clear()
            free = PREFETCH * s.webhook_concurrency - len(self._inflight)
            sleep_s = s.webhook_poll_s
            rows: list[asyncpg.Record] = []
            if free > 0:
                try:
                    rows = await webhookstore.claim(
                        self._pool,
                        limit=free,
                        room={
                            d: max(0, PREFETCH * s.webhook_endpoint_concurrency - n)
                            for d, n in self._per_destination.items()
                            if n
                        },
                        default_room=PREFETCH * s.webhook_endpoint_concurrency,
                        lease_s=s.webhook_lease_s,
                        lease=self.lease,
                    )
                    self.liveness.beat()  # the claim reached PostgreSQL: this loop is working
                    for row in rows:
                        self._begin(row)
                    if len(rows) == free:
                        continue  # there may be more due right now
                    # attempts just started wake the loop as they finish; idle, it sleeps until the
                    # next retry is due
                    due = None if rows else await webhookstore.seconds_until_due(self._pool)
                except db.UNAVAILABLE as exc:
                    log.warning("postgresql unavailable, retrying", error=repr(exc))
                    await asyncio.sleep(1)
                    continue
                if rows:
                    sleep_s = BLOCKED_RECHECK_S
                elif due is not None:
                    # overdue but not leased: at their destination's cap, or being leased elsewhere
                    sleep_s = min(sleep_s, due if due > 0 else BLOCKED_RECHECK_S)
            else:
                self.liveness.beat()  # every slot busy: working, with nothing to claim
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep_s):
                    await self._wake.wait()
            if rows:
                # draining a backlog: let a few more attempts finish, so that the next claim leases a
                # batch rather than one delivery per query
                await asyncio.sleep(CLAIM_COALESCE_S)

    def _begin(self, row: asyncpg.Record) -> None:
        destination: str = row["destination"]
        self._per_destination[destination] += 1
        if destination not in self._destination_slots:
            self._destination_slots[destination] = asyncio.Semaphore(
                self.settings.webhook_endpoint_concurrency
            )
        task = asyncio.get_running_loop().create_task(self._deliver(row, time.monotonic()))
        self._inflight[row["id"]] = task

    async def _deliver(self, row: asyncpg.Record, leased_at: float) -> None:
        destination: str = row["destination"]
        try:
            async with self._destination_slots[destination], self._sending:
                # an attempt that could outlive the lease might overlap another dispatcher's: hand
                # the delivery back instead (only a receiver slower than the timeout gets here)
                if (
                    time.monotonic() - leased_at + self.settings.webhook_timeout_s
                    >= self.settings.webhook_lease_s
                ):
                    assert self._pool is not None
                    await webhookstore.release(self._pool, self.lease, [row["id"]])
                    return
                outcome = await self._attempt(row)
            self._outcomes.append((outcome, row["endpoint_id"] and str(row["endpoint_id"])))
            self._outcomes_ready.set()
        except Exception:  # a bug here must not lose the slot; the lease makes it due again
            log.exception("delivery attempt crashed", delivery_id=str(row["id"]))
        finally:
            held = self._per_destination[destination] - 1
            self._per_destination[destination] = held
            if held <= 0:
                del self._per_destination[destination]
                self._destination_slots.pop(destination, None)
            self._inflight.pop(row["id"], None)
            # lease more once half the prefetch has drained, for this destination or in all: not
            # after every attempt, which would cost a claim query per delivery
            s = self.settings
            if (
                held == s.webhook_endpoint_concurrency
                or len(self._inflight) == s.webhook_concurrency
                or (not self._inflight)
            ):
                self._wake.set()

    # ---- one attempt -------------------------------------------------------------------------

    async def _secrets(self, row: asyncpg.Record) -> list[str]:
        secret = row["secret"]
        if secret is None:  # a job URL of a tenant that never asked for its signing secret
            assert self._pool is not None
            created = await webhookstore.signing_secret(self._pool, row["tenant"], signing.new_secret())
            secret = created["secret"]
        return [secret] + ([row["previous_secret"]] if row["previous_secret"] else [])

    async def _attempt(self, row: asyncpg.Record) -> Outcome:
        at = datetime.now(UTC)
        t0 = time.perf_counter()
        if row["endpoint_disabled"]:
            response = Response(None, "the endpoint is disabled", None, 0.0)
        else:
            response = await self._post(row, at)
        status, next_at = decide(row, response, at=at, settings=self.settings, rng=self.rng)
        # a delivered attempt at debug (one line per webhook would be the dispatcher's busiest work at
        # info); one that failed, at info
        log.log(
            logging.DEBUG if status == "delivered" else logging.INFO,
            "delivery attempt",
            delivery_id=str(row["id"]),
            job_id=str(row["job_id"]),
            batch_id=str(row["batch_id"]),
            event_type=row["event_type"],
            status_code=response.status_code,
            error=response.error,
            outcome=status,
            duration_ms=round((time.perf_counter() - t0) * 1000, 2),
        )
        return Outcome(
            delivery_id=row["id"],
            lease=self.lease,
            status="failed" if row["endpoint_disabled"] else status,
            at=at,
            duration_ms=response.duration_ms,
            status_code=response.status_code,
            error=response.error,
            next_attempt_at=next_at,
        )

    async def _post(self, row: asyncpg.Record, at: datetime) -> Response:
        assert self._http is not None
        s = self.settings
        url: str = row["url"]
        t0 = time.perf_counter()

        def done(code: int | None, error: str | None, retry_after: float | None = None) -> Response:
            return Response(code, error, retry_after, round((time.perf_counter() - t0) * 1000, 3))

        if not s.webhook_allow_private and (why := ssrf.literal_blocked(url)):
            return done(None, f"refused: {why}")
        body = render_body(row["event_type"], row["job"])
        msg_id = signing.message_id(row["job_id"], row["seq"], row["batch_id"])
        headers = signing.headers(await self._secrets(row), msg_id, int(at.timestamp()), body)
        try:
            async with asyncio.timeout(s.webhook_timeout_s):
                async with self._http.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    answer = await _read_capped(resp, s.webhook_max_response_bytes)
                    code = resp.status
                    if 200 <= code < 300:
                        return done(code, None)
                    if 300 <= code < 400:
                        where = resp.headers.get("Location", "?")
                        return done(code, f"redirect to {where[:300]} not followed")
                    snippet = answer[:ERROR_SNIPPET].decode("utf-8", "replace")
                    error = f"HTTP {code}" + (f": {snippet}" if snippet.strip() else "")
                    return done(code, error, retry_after_s(resp.headers.get("Retry-After"), at))
        except TimeoutError:
            return done(None, f"no complete answer within {s.webhook_timeout_s:g} s")
        except ssrf.BlockedDestination as exc:
            return done(None, f"refused: {exc}")
        except aiohttp.ClientError as exc:
            return done(None, f"{exc.__class__.__name__}: {exc}"[:500])
        except OSError as exc:
            return done(None, f"{exc.__class__.__name__}: {exc}"[:500])

    # ---- recording ---------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._outcomes_ready.wait()
            self._outcomes_ready.clear()
            if not self._recording:
                return  # stop() records the last outcomes itself
            try:
                await self._flush()
                if not self._inflight:
                    self._wake.set()  # a retry just scheduled may come due before the idle nap ends
            except db.UNAVAILABLE as exc:
                # the outcomes stay queued; their leases keep the deliveries from being sent again
                # for a while, and past that a duplicate (same webhook-id) is the safe failure
                log.warning("could not record attempts, retrying", error=repr(exc))
                await asyncio.sleep(1)
                self._outcomes_ready.set()

    async def _flush(self) -> None:
        if not self._outcomes or self._pool is None:
            return
        batch, self._outcomes = self._outcomes, []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                recorded = await webhookstore.record(conn, [o for o, _ in batch])
                health: dict[UUID, bool] = {}
                gone: dict[UUID, str] = {}
                for outcome, endpoint in batch:
                    if endpoint is None:
                        continue
                    ok = outcome.status == "delivered"
                    health[UUID(endpoint)] = ok or health.get(UUID(endpoint), False)
                    if outcome.status_code == 410:
                        gone[UUID(endpoint)] = "the receiver answered 410 Gone"
                for row in await webhookstore.endpoint_health(conn, health):
                    since = row["failing_since"]
                    window = timedelta(seconds=self.settings.webhook_disable_after_s)
                    if since is not None and datetime.now(UTC) - since >= window:
                        gone.setdefault(row["id"], f"failing without a success since {iso(since)}")
                disabled = await webhookstore.disable_endpoints(conn, gone)
        except BaseException:
            self._outcomes = batch + self._outcomes
            raise
        for endpoint_id in disabled:
            log.warning("endpoint disabled", endpoint_id=str(endpoint_id), reason=gone[endpoint_id])
        await self._record_metrics(batch, recorded)

    async def _record_metrics(self, batch: list[tuple[Outcome, str | None]], recorded: list[Any]) -> None:
        if self._redis is None:
            return
        attempts = Counter(_attempt_outcome(o) for o, _ in batch)
        finished = Counter(r["status"] for r in recorded if r["status"] != "pending")
        latencies = [
            (r["delivered_at"] - r["created_at"]).total_seconds()
            for r in recorded
            if r["status"] == "delivered" and r["delivered_at"] is not None
        ]
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            await jobmetrics.record_deliveries(self._redis, self.keys, attempts, finished, latencies)


async def _end(task: asyncio.Task[None]) -> None:
    """Cancel one of the dispatcher's loops and wait for it to end. Unlike `await task` under
    suppress(CancelledError), a cancel of the caller itself (a timeout around stop()) still ends
    the wait."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.result()  # a loop that crashed: its error, as `await task` would raise it


async def _bounded(closing: Awaitable[Any], what: str) -> bool:
    """Await a close for at most CLOSE_TIMEOUT_S; False (logged) when it did not finish."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await closing
    except TimeoutError:
        log.warning("closing took too long, abandoned", what=what)
        return False
    except Exception as exc:  # already broken: nothing left to close cleanly
        log.warning("closing failed", what=what, error=repr(exc))
    return True


def _attempt_outcome(outcome: Outcome) -> str:
    if outcome.status == "delivered":
        return "success"
    if outcome.status_code is None:
        return "error"  # no answer: timeout, refused, connection failure
    return f"{outcome.status_code // 100}xx"


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the answer; the rest is never read (the connection is dropped)."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = await resp.content.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
