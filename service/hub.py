"""The fan-out hub: one Redis pub/sub connection per api process, demultiplexed to in-process
subscribers by job, by tenant, or to everything (an admin's dashboard).

Each subscriber (an SSE stream, a WebSocket, a long-poll) owns a bounded queue. When a client falls
behind, its queued progress events are coalesced per job (the newest replaces the older one still
waiting); terminal events are never dropped; a client that stays over the hard bound is marked
overflowed and its stream closes it (it reconnects and replays from PostgreSQL).

A subscriber registers *before* it reads the backlog from PostgreSQL, so an event committed in
between is never missed (its follower, service/follower.py, drops what it already sent). Pub/sub is
not durable: when the connection drops and comes back, every subscriber gets a resync marker and
re-reads what it missed from job_events.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from uuid import UUID

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from jobwire import db, jobstore
from jobwire.apikeys import Principal
from jobwire.config import Settings
from jobwire.events import Event, Message
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from jobwire.redis_client import create_redis, is_primary
from service import metrics

log = get_logger("jobwire.hub")

SOFT_LIMIT = 64  # queued events above which progress coalesces per job
HARD_LIMIT = 2048  # queued events above which the client is too slow and gets closed
# silence on the subscription after which the hub checks it (see EventHub._receive)
LIVENESS_S = 5.0
# how often the hub compares the followed jobs' newest seqs in PostgreSQL with what it was sent
AUDIT_S = 2.0


class Encoded:
    """A live event encoded once by the hub for every subscriber it goes to: its JSON, and the frame
    a one-job SSE stream sends, built by the first stream that sends it and reused by the others."""

    __slots__ = ("frame", "json")

    def __init__(self, json: bytes) -> None:
        self.json = json
        self.frame: bytes | None = None


class Item:
    """One queued event with its shared encoding, or (with `event` None) a marker."""

    __slots__ = ("encoded", "event", "tenant")

    def __init__(self, tenant: str | None, event: Event | None, encoded: Encoded | None) -> None:
        self.tenant = tenant
        self.event = event
        self.encoded = encoded


RESYNC = Item(None, None, None)
# pushed to a batch's followers when one of its jobs changed or it settled: re-read the batch
BATCH_CHANGED = Item(None, None, None)
HEARTBEAT = Item(None, None, None)  # pushed by the hub's sweep to an idle stream: time for a keepalive


class Subscriber:
    """One client's queue. It knows whose it is: `push` refuses every event its principal may not
    see (another tenant's, or for a stream token any job but its own), whatever the subscription
    state, so no routing mistake or race in a stream can hand a client someone else's event."""

    def __init__(
        self, principal: Principal, *, soft_limit: int = SOFT_LIMIT, hard_limit: int = HARD_LIMIT
    ) -> None:
        self.scope = principal.scope()  # None: an admin, who sees every tenant
        self.job_scope = principal.job_scope
        self.key_id = principal.key_id  # the API key (or the key that minted the stream token)
        self.revoked = False  # closed because its key was revoked
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.overflowed = False
        self.closed = False  # the stream must end: the api is shutting down, or the client left
        # the client's connection, for subscribers whose stream cannot notice a departure by itself
        # (SSE): the hub checks them all in one sweep instead of each stream polling
        self.transport: asyncio.BaseTransport | None = None
        # set by streams that want keepalives: the sweep pushes HEARTBEAT after this much silence,
        # so no stream needs a timer of its own
        self.heartbeat_s: float | None = None
        self.last_write = time.monotonic()
        self._items: deque[Item] = deque()
        # the newest queued item of each job: a progress item there may be replaced in place
        self._last_of_job: dict[str, Item] = {}
        # the consumer waiting in get(), if any: a bare future costs less than an asyncio.Event,
        # and with thousands of subscribers per event that adds up
        self._waiter: asyncio.Future[None] | None = None
        # what the hub routes to this subscriber (kept here so that detaching is exact)
        self.jobs: set[str] = set()
        self.batches: set[str] = set()
        self.tenants: set[str] = set()
        self.firehose = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, tenant: str | None, event: Event, encoded: Encoded) -> None:
        if self.overflowed:
            return
        job_id = event["job_id"]
        if (self.scope is not None and tenant != self.scope) or (
            self.job_scope is not None and job_id != self.job_scope
        ):
            return
        if event["type"] == "progress" and len(self._items) >= self.soft_limit:
            last = self._last_of_job.get(job_id)
            if last is not None and last.event is not None and last.event["type"] == "progress":
                last.event, last.tenant, last.encoded = event, tenant, encoded
                return
        if len(self._items) >= self.hard_limit:
            self.overflowed = True
            self._items.clear()
            self._last_of_job.clear()
            self._wake()
            return
        item = Item(tenant, event, encoded)
        self._items.append(item)
        self._last_of_job[job_id] = item
        self._wake()

    def poke(self, tenant: str) -> None:
        """A batch this subscriber follows changed: queue one marker (never more than one waiting).
        Another tenant's batch is refused like its events are."""
        if self.overflowed or (self.scope is not None and tenant != self.scope):
            return
        if not self._items or self._items[-1] is not BATCH_CHANGED:
            self._items.append(BATCH_CHANGED)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def revoke(self) -> None:
        """Its key was revoked: the stream ends (and a WebSocket says why)."""
        self.revoked = True
        self.close()

    def heartbeat(self) -> None:
        self._items.append(HEARTBEAT)
        self._wake()

    def resync(self) -> None:
        if not self._items or self._items[-1] is not RESYNC:
            self._items.append(RESYNC)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout: float | None) -> Item | None:
        """The next item, or None after `timeout` seconds (at once when overflowed or closed)."""
        if self.closed:
            return None
        items = self._items
        while not items:
            if self.overflowed or self.closed:
                return None
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await waiter
                    continue
                try:
                    # asyncio.timeout, not wait_for: no extra task per wait
                    async with asyncio.timeout(timeout):
                        await waiter
                except TimeoutError:
                    return None
            finally:
                self._waiter = None
        item = items.popleft()
        event = item.event
        if event is not None:
            job_id = event["job_id"]
            if self._last_of_job.get(job_id) is item:
                del self._last_of_job[job_id]
        return item


class EventHub:
    def __init__(self, redis: str | Settings, keys: Keys, *, liveness_s: float = LIVENESS_S) -> None:
        """`redis`: a URL, or the process's settings (which may name Sentinels)."""
        self.redis_target = redis
        self.liveness_s = liveness_s
        self.keys = keys
        self._by_job: dict[str, set[Subscriber]] = {}
        self._by_tenant: dict[str, set[Subscriber]] = {}
        self._by_batch: dict[str, set[Subscriber]] = {}
        self._firehose: set[Subscriber] = set()
        # every open stream, subscribed to anything or not: revocation and shutdown reach them all
        self._open: set[Subscriber] = set()
        self.connected = asyncio.Event()
        self.closing = False
        # the newest seq the hub was sent live, per followed job, and the jobs found behind it by
        # the last audit (see `audit`)
        self._sent: dict[str, int] = {}
        self._behind: set[str] = set()

    # ---- routing -------------------------------------------------------------------------------

    def attach(self, sub: Subscriber) -> None:
        """Count `sub` as an open stream until `detach`."""
        self._open.add(sub)

    def add_jobs(self, sub: Subscriber, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._by_job.setdefault(job_id, set()).add(sub)
            sub.jobs.add(job_id)

    def remove_jobs(self, sub: Subscriber, job_ids: Iterable[str]) -> None:
        for job_id in list(job_ids):
            subs = self._by_job.get(job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_job[job_id]
                    self._sent.pop(job_id, None)
            sub.jobs.discard(job_id)

    def add_batches(self, sub: Subscriber, batch_ids: Iterable[str]) -> None:
        """Poke `sub` (BATCH_CHANGED) whenever a job of these batches has an event or they settle."""
        for batch_id in batch_ids:
            self._by_batch.setdefault(batch_id, set()).add(sub)
            sub.batches.add(batch_id)

    def remove_batches(self, sub: Subscriber, batch_ids: Iterable[str]) -> None:
        for batch_id in list(batch_ids):
            subs = self._by_batch.get(batch_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_batch[batch_id]
            sub.batches.discard(batch_id)

    def add_tenant(self, sub: Subscriber, tenant: str | None) -> None:
        """Every event of `tenant`; None: every event of every tenant (the subscriber's own scope
        still filters what it is handed)."""
        if tenant is None:
            self._firehose.add(sub)
            sub.firehose = True
        else:
            self._by_tenant.setdefault(tenant, set()).add(sub)
            sub.tenants.add(tenant)

    def remove_tenants(self, sub: Subscriber) -> None:
        self._firehose.discard(sub)
        sub.firehose = False
        for tenant in list(sub.tenants):
            subs = self._by_tenant.get(tenant)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_tenant[tenant]
        sub.tenants.clear()

    def detach(self, sub: Subscriber) -> None:
        self.remove_jobs(sub, sub.jobs)
        self.remove_batches(sub, sub.batches)
        self.remove_tenants(sub)
        self._open.discard(sub)

    @contextlib.contextmanager
    def subscription(
        self, sub: Subscriber, *, jobs: Iterable[str] = (), batches: Iterable[str] = ()
    ) -> Iterator[Subscriber]:
        self.attach(sub)
        self.add_jobs(sub, jobs)
        self.add_batches(sub, batches)
        try:
            yield sub
        finally:
            self.detach(sub)

    def close_all(self) -> None:
        """Shutdown: every stream ends now (clients reconnect to another api with Last-Event-ID)."""
        self.closing = True
        for sub in self._all_subscribers():
            sub.close()

    def close_keys(self, key_ids: Collection[int]) -> int:
        """End every open stream of these (revoked) keys, and of the stream tokens they minted."""
        ended = 0
        for sub in self._all_subscribers():
            if sub.key_id in key_ids and not sub.closed:
                sub.revoke()
                ended += 1
        return ended

    def _all_subscribers(self) -> set[Subscriber]:
        subs: set[Subscriber] = self._firehose | self._open
        for group in (*self._by_job.values(), *self._by_tenant.values(), *self._by_batch.values()):
            subs |= group
        return subs

    def subscriber_count(self) -> int:
        return len(self._all_subscribers())

    # ---- delivery ------------------------------------------------------------------------------

    def dispatch(self, raw: bytes) -> None:
        """Route one pub/sub payload: a message `{"tenant", "event", "batch_id"?}` (or, when a batch
        settled, `{"tenant", "batch_id"}`), or a list of them."""
        if not (self._by_job or self._by_tenant or self._firehose or self._by_batch):
            return  # nobody listens here (an api that only takes submissions): skip the parsing
        try:
            decoded = orjson.loads(raw)
            messages: list[Message] = decoded if isinstance(decoded, list) else [decoded]
            routed = [(m["tenant"], m["event"], m["event"]["job_id"]) for m in messages if "event" in m]
            batches = [(m["tenant"], m["batch_id"]) for m in messages if "batch_id" in m]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed event message")
            return
        if self._by_batch:
            for tenant, batch_id in batches:
                for sub in self._by_batch.get(batch_id, ()):
                    sub.poke(tenant)
        for tenant, event, job_id in routed:
            metrics.HUB_EVENTS.inc()
            followers = self._by_job.get(job_id)
            if followers:
                self._sent[job_id] = max(self._sent.get(job_id, 0), event["seq"])
            targets = (followers or set()) | self._by_tenant.get(tenant, set()) | self._firehose
            if targets:
                # once, however many clients it goes to; copied to its own size, because orjson
                # hands back a buffer of about 4 KiB however small the event, and a slow client's
                # queue can hold thousands of these
                encoded = Encoded(bytes(memoryview(orjson.dumps(event))))
                for sub in targets:
                    sub.push(tenant, event, encoded)

    async def sweep(self, interval_s: float = 1.0) -> None:
        """Once a second, for every subscriber at once: close those whose client has gone (a stream
        blocked waiting for events would otherwise hold a dead client until its next write), and
        wake idle ones that are due a heartbeat. One loop here costs far less than a timer per
        stream when an api holds thousands of them."""
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for sub in self._all_subscribers():
                transport = sub.transport
                if transport is not None and transport.is_closing():
                    sub.close()
                elif sub.heartbeat_s is not None and now - sub.last_write >= sub.heartbeat_s and not sub:
                    sub.heartbeat()

    async def audit(self, pool: asyncpg.Pool, interval_s: float = AUDIT_S) -> None:
        """Catch events that were committed but never published. A worker that reaches PostgreSQL
        but not Redis (cut off from it, or Redis failing over) commits its events and loses their
        publish, and the streams following those jobs, on an api whose own subscription is fine,
        would wait for them forever. Every `interval_s` one query reads the newest seq of every
        followed job; a job still behind what the hub was sent at two audits in a row (so not an
        event merely in flight) gets its followers a resync, which re-reads it from job_events."""
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(*db.UNAVAILABLE):
                self.resync_behind(await jobstore.last_seqs(pool, [UUID(j) for j in list(self._by_job)]))

    def resync_behind(self, last_seqs: dict[UUID, int]) -> None:
        """One audit's verdict (see `audit`), from the jobs' newest seqs in PostgreSQL."""
        behind = {str(j) for j, seq in last_seqs.items() if seq > self._sent.get(str(j), 0)}
        for job_id in behind & self._behind:
            self._sent[job_id] = last_seqs[UUID(job_id)]
            for sub in self._by_job.get(job_id, ()):
                sub.resync()
        self._behind = behind

    def _resync_all(self) -> None:
        for sub in self._all_subscribers():
            sub.resync()

    async def _receive(self, redis: Redis, pubsub: PubSub) -> None:
        """Dispatch messages until the subscription is lost. A connection can die without a word (a
        Redis host powered off, a network cut: no reset ever arrives), and a primary can be replaced
        while this connection still reaches it (Sentinel promoted a replica while it was cut off):
        after `liveness_s` of silence the hub pings, and through Sentinel checks that its server is
        still the primary; no pong within `liveness_s`, or another primary, counts as lost."""
        heard = time.monotonic()
        pinged: float | None = None
        while True:
            message = await pubsub.get_message(timeout=self.liveness_s)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, None
                if message["type"] == "message":
                    self.dispatch(message["data"])
                continue
            if pinged is not None:
                if now - pinged >= self.liveness_s:
                    raise RedisConnectionError(f"no answer to a ping in {self.liveness_s:g} s")
            elif now - heard >= self.liveness_s:
                if not await is_primary(redis, pubsub.connection):
                    raise RedisConnectionError("the subscribed server is no longer the primary")
                await pubsub.ping()
                pinged = now

    async def run(self) -> None:
        """Subscribe, dispatch, and reconnect with backoff for as long as the process runs."""
        delay = 0.1
        while True:
            # the socket timeout bounds connecting and subscribing; reads wait on their own timeout
            redis: Redis = create_redis(self.redis_target)
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.keys.events_channel)
                    self.connected.set()
                    delay = 0.1
                    # anything published while we were away is only in PostgreSQL: re-read it
                    self._resync_all()
                    await self._receive(redis, pubsub)
            except REDIS_UNAVAILABLE as exc:
                if self.connected.is_set():
                    log.warning("event subscription lost, reconnecting", error=str(exc))
                self.connected.clear()
                self._resync_all()
            finally:
                with contextlib.suppress(Exception):
                    await redis.aclose()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 2.0)
