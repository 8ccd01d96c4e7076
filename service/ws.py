"""WebSocket `GET /v1/ws`: follow jobs (replaying after `since`), batches (their counts and
progress, then their terminal event) or a whole tenant (the dashboard feed), with periodic queue
stats for the latter. JSON text frames both ways."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any
from uuid import UUID

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from jobwire import batchstore, db, jobstore
from jobwire.apikeys import Principal
from jobwire.batch import batch_event, batch_view
from jobwire.events import Event
from jobwire.logs import get_logger
from service import metrics
from service.cors import CORS
from service.follower import Follower, stored_backlog
from service.http import seq_value
from service.hub import BATCH_CHANGED, RESYNC, EventHub, Item, Subscriber
from service.limits import limit_key
from service.problems import Problem
from service.state import DB, HUB, PRINCIPAL, RATE_LIMITER, SETTINGS, STATS, STREAM_LIMITER

log = get_logger("jobwire.ws")
routes = web.RouteTableDef()
WS_DELIVERED = metrics.EVENTS_DELIVERED.labels("websocket")

MAX_JOBS_PER_CONNECTION = 1000
MAX_BATCHES_PER_CONNECTION = 100
# a batch's progress frames are at least this far apart on one socket (the newest state wins)
BATCH_COALESCE_S = 0.25
# one subscribe frame reads the state of at most this many jobs, and replays their backlogs in pages
# (jobstore.EVENT_PAGE events each); every page after the first is one more request of the key
MAX_JOBS_PER_SUBSCRIBE = 100
# a socket whose ops were refused this many times within REFUSALS_WINDOW_S is closed
MAX_REFUSALS = 20
REFUSALS_WINDOW_S = 10.0
STATS_INTERVAL_S = 5.0
SEND_TIMEOUT_S = 5.0
TRY_AGAIN_LATER = 1013  # RFC 6455: "Try Again Later", for clients too slow to keep up


class Connection:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, principal: Principal) -> None:
        self.request = request
        self.ws = ws
        self.principal = principal
        self.hub: EventHub = request.app[HUB]
        self.sub = Subscriber(principal, hard_limit=request.app[SETTINGS].stream_queue_max)
        self.hub.attach(self.sub)  # an open stream (revocation and shutdown reach it) from now on
        if self.hub.closing:
            self.sub.close()
        self.limiter = request.app[RATE_LIMITER]
        self.limit_key = limit_key(principal)
        # the followed jobs; every replayed page after the first is charged to the key's budget
        # (waited for), so no op reads unboundedly fast. A job is followed past its terminal event:
        # a retry goes on on the same subscription.
        backlog = stored_backlog(
            request.app[DB],
            principal.scope(),
            stop=lambda: self.sub.closed,
            pace=lambda: self.limiter.wait(self.limit_key),
        )
        self.follower = Follower(backlog, until_terminal=False)
        self.lock = asyncio.Lock()  # replay (reader) and live events (writer) take turns per frame
        self.refusals: deque[float] = deque()  # when ops were refused, within REFUSALS_WINDOW_S
        # the followed batches and the version of the last state sent of each (None: none yet)
        self.batches: dict[str, int | None] = {}
        self.batches_sent_at = 0.0

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_frame(orjson.dumps(message))

    async def error(self, detail: str) -> None:
        await self.send({"op": "error", "detail": detail})

    # ---- client to server ---------------------------------------------------------------------

    async def admit(self) -> bool:
        """Charge one op to the key's request budget, as a REST request is. A refused op gets an
        error; a socket that keeps going over its budget is closed (policy violation)."""
        wait_s = self.limiter.take(self.limit_key)
        if not wait_s:
            return True
        now = time.monotonic()
        self.refusals.append(now)
        while self.refusals[0] < now - REFUSALS_WINDOW_S:
            self.refusals.popleft()
        if len(self.refusals) >= MAX_REFUSALS:
            await self.ws.close(
                code=WSCloseCode.POLICY_VIOLATION,
                message=b"too many requests over this API key's rate limit; slow down and reconnect",
            )
            return False
        await self.error(str(self.limiter.refusal(wait_s).detail))
        return False

    async def handle(self, raw: str | bytes) -> None:
        if not await self.admit():
            return
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self.error("frames must be JSON objects")
            return
        if not isinstance(message, dict):
            await self.error("frames must be JSON objects")
            return
        op = message.get("op")
        if op == "ping":
            await self.send({"op": "pong"})
        elif op == "subscribe" and message.get("all") is True:
            await self.subscribe_all()
        elif op == "subscribe" and "batches" in message:
            await self.subscribe_batches(message.get("batches"))
        elif op == "unsubscribe" and isinstance(message.get("batches"), list):
            batches = [str(b) for b in message["batches"]]
            self.hub.remove_batches(self.sub, batches)
            for b in batches:
                self.batches.pop(b, None)
            await self.send({"op": "unsubscribed", "batches": batches})
        elif op == "subscribe" and "jobs" in message:
            await self.subscribe_jobs(message.get("jobs"), message.get("since") or {})
        elif op == "unsubscribe" and message.get("all") is True:
            self.hub.remove_tenants(self.sub)
            await self.send({"op": "unsubscribed", "all": True})
        elif op == "unsubscribe" and isinstance(message.get("jobs"), list):
            jobs = [str(j) for j in message["jobs"]]
            self.hub.remove_jobs(self.sub, jobs)
            self.follower.unfollow(jobs)
            await self.send({"op": "unsubscribed", "jobs": jobs})
        else:
            await self.error(
                "unknown op; use subscribe (jobs + since, batches, or all), unsubscribe (jobs, batches,"
                " or all), or ping"
            )

    async def subscribe_all(self) -> None:
        if self.principal.job_scope is not None:
            await self.error("a stream token follows only its own job; use an API key for the tenant feed")
            return
        self.hub.add_tenant(self.sub, self.principal.scope() if not self.principal.is_admin else None)
        await self.send({"op": "subscribed", "all": True})
        await self.send_stats()

    async def subscribe_jobs(self, jobs: Any, since: Any) -> None:
        if not isinstance(jobs, list) or not isinstance(since, dict):
            await self.error("subscribe needs `jobs`: [ids] and optionally `since`: {id: seq}")
            return
        try:
            ids = [UUID(str(j)) for j in jobs]
            seqs = {str(k): seq_value(v) for k, v in since.items()}
            after = {k: v for k, v in seqs.items() if v is not None}
            if len(after) != len(seqs):
                raise ValueError("`since` holds a value that is not a seq")
        except (ValueError, TypeError):
            await self.error("`jobs` must be job ids and `since` a map of job id to seq")
            return
        keys = [str(i) for i in dict.fromkeys(ids)]
        if len(keys) > MAX_JOBS_PER_SUBSCRIBE:
            await self.error(f"one subscribe names at most {MAX_JOBS_PER_SUBSCRIBE} jobs")
            return
        if len(self.follower) + len(keys) > MAX_JOBS_PER_CONNECTION:
            await self.error(f"one connection follows at most {MAX_JOBS_PER_CONNECTION} jobs")
            return
        if self.principal.job_scope is not None and any(k != self.principal.job_scope for k in keys):
            await self.error("a stream token follows only its own job")
            return
        scope = self.principal.scope()
        # The tenant check comes first: a job is registered with the hub only once it is known to
        # be the principal's. Then the replay reads everything after the cursor (for a job without
        # `since`, after the seq just read), so an event committed between the read and the
        # registration is replayed, and one that also arrives live is deduped. The lock holds live
        # delivery back until the replay is out, so the order is by seq.
        async with self.lock:
            rows = await jobstore.get_jobs(self.request.app[DB], ids, scope)
            found = {str(r["id"]): r for r in rows}
            unknown = [k for k in keys if k not in found]
            if unknown:
                await self.error(f"no job {unknown[0]}")
            known = [k for k in keys if k in found]
            if not known:
                return
            self.hub.add_jobs(self.sub, known)
            for job in known:
                # with `since`, replay after it; without, follow from the job's current event on
                if job not in self.follower:
                    self.follower.follow(job, after.get(job, found[job]["last_seq"]))
            await self.send({"op": "subscribed", "jobs": known})
            await self.replay(known)

    async def subscribe_batches(self, batches: Any) -> None:
        """Follow batches: their current state at once (a `progress` event, or the terminal one for
        a batch that has ended), then a coalesced `progress` on every change and one terminal
        `completed`/`cancelled` event, after which the batch is no longer followed."""
        try:
            if not isinstance(batches, list):
                raise TypeError("not a list")
            ids = list(dict.fromkeys(UUID(str(b)) for b in batches))
        except (ValueError, TypeError):
            await self.error("subscribe needs `batches`: [batch ids]")
            return
        keys = [str(i) for i in ids]
        if len(set(self.batches) | set(keys)) > MAX_BATCHES_PER_CONNECTION:
            await self.error(f"one connection follows at most {MAX_BATCHES_PER_CONNECTION} batches")
            return
        if self.principal.job_scope is not None and any(k != self.principal.job_scope for k in keys):
            await self.error("a stream token follows only its own job or batch")
            return
        scope = self.principal.scope()
        async with self.lock:
            # registered first, then read: a change committed in between is not missed
            known = []
            for batch_id in ids:
                if await batchstore.get_batch(self.request.app[DB], batch_id, scope) is None:
                    await self.error(f"no batch {batch_id}")
                    continue
                known.append(str(batch_id))
            if not known:
                return
            self.hub.add_batches(self.sub, known)
            for key in known:
                self.batches.setdefault(key, None)
            await self.send({"op": "subscribed", "batches": known})
            await self.send_batches(known)

    async def send_batches(self, keys: list[str] | None = None) -> None:
        """Send the followed batches (None: all) whose state changed since the last frame; a batch
        that has ended gets its terminal event and is unfollowed. Call with the lock."""
        pool = self.request.app[DB]
        scope = self.principal.scope()
        for key in list(self.batches if keys is None else keys):
            if key not in self.batches:
                continue
            row = await batchstore.get_batch(pool, UUID(key), scope)
            if row is None:
                self.hub.remove_batches(self.sub, [key])
                del self.batches[key]
                continue
            if row["settled_at"] is not None:
                event = batch_event(batch_view(row, None), row["status"], row["finished_at"])
                await self.send({"op": "batch", "event": event})
                self.hub.remove_batches(self.sub, [key])
                del self.batches[key]
                continue
            tally = (await jobstore.batch_tallies(pool, [row["id"]])).get(row["id"])
            version = tally.version if tally is not None else 0
            if version != self.batches[key]:
                event = batch_event(batch_view(row, tally), "progress", row["updated_at"])
                await self.send({"op": "batch", "event": event})
                self.batches[key] = version
        self.batches_sent_at = time.monotonic()

    async def replay(self, jobs: list[str] | None = None) -> None:
        """Send what followed jobs (None: all of them) have after their cursors. Call with the lock."""
        async for event in self.follower.backlog(jobs):
            await self.send_event(event, None)

    # ---- server to client ---------------------------------------------------------------------

    async def deliver(self, item: Item) -> None:
        """Send a live event: for a followed job, what its follower says (in seq order, no
        duplicate, a missed state change first); a feed's event as it comes. Call with the lock."""
        event, live = item.event, item.encoded
        if event is None or live is None:
            return
        if event["job_id"] not in self.follower:
            await self.send_event(event, item.tenant, live.json)
            return
        for sent in await self.follower.admit(event):
            await self.send_event(sent, item.tenant, live.json if sent is event else None)

    async def send_event(self, event: Event, tenant: str | None, json: bytes | None = None) -> None:
        await self.send_frame(self.envelope(event, tenant, json))
        WS_DELIVERED.inc()

    def envelope(self, event: Event, tenant: str | None, json: bytes | None = None) -> bytes:
        """`{"op": "event", "event": …}` (plus `tenant` for admins), around the event's JSON as the hub
        encoded it once for every client."""
        data = json if json is not None else orjson.dumps(event)
        if self.principal.is_admin and tenant is not None:
            return b'{"op":"event","tenant":%s,"event":%s}' % (orjson.dumps(tenant), data)
        return b'{"op":"event","event":%s}' % data

    async def send_frame(self, frame: bytes) -> None:
        # a text frame (browsers hand binary frames over as Blobs), from bytes without a decode
        await asyncio.wait_for(self.ws.send_frame(frame, WSMsgType.TEXT), SEND_TIMEOUT_S)

    async def send_stats(self) -> None:
        scope = None if self.principal.is_admin else self.principal.tenant
        await self.send({"op": "stats", "queues": await self.request.app[STATS].get(scope)})

    async def write_loop(self) -> None:
        next_stats = time.monotonic() + STATS_INTERVAL_S
        while True:
            item = await self.sub.get(timeout=max(0.05, next_stats - time.monotonic()))
            if self.sub.revoked:
                await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"the API key was revoked")
                return
            if self.sub.closed:
                await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                return
            if self.sub.overflowed:
                metrics.SLOW_CLIENTS.labels("websocket").inc()
                await self.close_slow()
                return
            if item is RESYNC:
                await self.resync()
            elif item is BATCH_CHANGED:
                # coalesced: what else changes meanwhile folds into the next read
                await asyncio.sleep(max(0.0, self.batches_sent_at + BATCH_COALESCE_S - time.monotonic()))
                async with self.lock:
                    await self.send_batches()
            elif item is not None:
                async with self.lock:
                    await self.deliver(item)
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + STATS_INTERVAL_S
                if self.sub.tenants or self.sub.firehose:
                    await self.send_stats()
                if self.batches:
                    # a lost publish delays a batch's frames by this much, never forever
                    async with self.lock:
                        await self.send_batches()

    async def resync(self) -> None:
        """The hub lost Redis for a while: replay what followed jobs missed, and tell feed
        subscribers to reload."""
        async with self.lock:
            await self.replay()
            await self.send_batches()
        if self.sub.tenants or self.sub.firehose:
            await self.send({"op": "resync"})

    async def close_slow(self) -> None:
        message = b"client too slow: reconnect and subscribe again with since"
        try:
            await asyncio.wait_for(self.ws.close(code=TRY_AGAIN_LATER, message=message), 2)
        except (TimeoutError, ConnectionResetError):
            if self.request.transport is not None:
                self.request.transport.abort()


@routes.get("/v1/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    principal = request[PRINCIPAL]
    ws = web.WebSocketResponse(heartbeat=request.app[SETTINGS].sse_heartbeat_s, max_msg_size=64 * 1024)
    if not ws.can_prepare(request).ok:
        raise Problem(
            400,
            "this endpoint speaks WebSocket: open it with a WebSocket client (Upgrade: websocket)",
            slug="websocket-required",
        )
    if not request.app[CORS].websocket_allowed(request):
        origin = request.headers.get("Origin")
        raise Problem(
            403, f"WebSockets from {origin} are not allowed (JOBWIRE_CORS_ORIGINS)", slug="origin-not-allowed"
        )
    with request.app[STREAM_LIMITER].hold(principal):
        await ws.prepare(request)
        return await _serve(request, ws, principal)


async def _serve(
    request: web.Request, ws: web.WebSocketResponse, principal: Principal
) -> web.WebSocketResponse:
    conn = Connection(request, ws, principal)
    metrics.WS_CONNECTIONS.inc()
    writer = asyncio.get_running_loop().create_task(conn.write_loop())
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                try:
                    await conn.handle(msg.data)
                except (ConnectionResetError, TimeoutError):
                    raise  # the client is gone or not reading: handled below
                except db.UNAVAILABLE:
                    await conn.error("temporarily unavailable (database); try again shortly")
                except Exception:
                    log.exception("websocket request failed")
                    await conn.error("internal error; it has been logged")
            if writer.done():
                break
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        request.app[HUB].detach(conn.sub)
        metrics.WS_CONNECTIONS.dec()
        if not ws.closed:
            await ws.close(code=WSCloseCode.GOING_AWAY)
    return ws
