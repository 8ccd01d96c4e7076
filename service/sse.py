"""Server-sent events: one job (`GET /v1/jobs/{id}/events`) or many on one stream
(`GET /v1/events?jobs=…`), replayed from PostgreSQL and continued live from the hub, with no gap
and no duplicate across reconnects; and a batch's counts and progress (`GET
/v1/batches/{id}/events`)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from uuid import UUID

import orjson
from aiohttp import web

from jobwire import batchstore, db, jobstore
from jobwire.apikeys import Principal
from jobwire.batch import batch_event, batch_view
from jobwire.events import Event
from jobwire.job import TERMINAL
from jobwire.logs import get_logger
from service import metrics
from service.follower import Follower, stored_backlog
from service.http import MAX_SEQ, decimal
from service.hub import BATCH_CHANGED, HEARTBEAT, RESYNC, Encoded, Item, Subscriber
from service.problems import Problem, invalid
from service.state import DB, HUB, PRINCIPAL, SETTINGS, STREAM_LIMITER

log = get_logger("jobwire.sse")
routes = web.RouteTableDef()
SSE_DELIVERED = metrics.EVENTS_DELIVERED.labels("sse")

MAX_JOBS = 100


def _last_event_id(request: web.Request) -> str | None:
    return request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or None


class EventStream:
    """The HTTP side of a stream: headers, framing, heartbeats, and noticing a client that left."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        self.heartbeat_s = request.app[SETTINGS].sse_heartbeat_s

    async def open(self, sub: Subscriber) -> None:
        # the hub's sweep watches the connection and sends the keepalives
        sub.transport = self.request.transport
        sub.heartbeat_s = self.heartbeat_s
        await self.response.prepare(self.request)
        # browsers reconnect after this many ms, with Last-Event-ID
        await self.response.write(b"retry: 2000\n\n")
        metrics.SSE_CONNECTIONS.inc()

    def close(self) -> None:
        metrics.SSE_CONNECTIONS.dec()

    async def serve(
        self, sub: Subscriber, pump: Callable[[], Awaitable[None]], what: str
    ) -> web.StreamResponse:
        """Open the stream, run `pump` until the stream ends, close it. Once the headers are out
        there is no problem document to send: an error ends the stream (logged, `what` naming it),
        and the client resumes with Last-Event-ID, as it does after leaving."""
        await self.open(sub)
        try:
            await pump()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client left; it resumes with Last-Event-ID
        except Exception as exc:
            if isinstance(exc, db.UNAVAILABLE):
                log.warning(f"{what} ended: database unavailable", error=repr(exc))
            else:
                log.exception(f"{what} ended by an error")
        finally:
            self.close()
        return self.response

    async def send(self, frame: bytes) -> None:
        await self.response.write(frame)
        SSE_DELIVERED.inc()

    async def next_item(self, sub: Subscriber) -> Item | None:
        """The next hub item; None when the client left (the hub's sweep closes the subscriber),
        the api is shutting down, or the client fell too far behind. Writes a keepalive comment
        when the sweep says the stream has been idle for a heartbeat interval."""
        while True:
            sub.last_write = time.monotonic()
            item = await sub.get(timeout=None)
            if sub.overflowed:
                metrics.SLOW_CLIENTS.labels("sse").inc()
                return None
            if item is not HEARTBEAT:
                return item  # None: closed
            await self.response.write(b": keepalive\n\n")


def sse_frame(event: Event, event_id: str, json: bytes | None = None) -> bytes:
    """An event as an SSE frame; `json`: the event's, when already encoded."""
    data = json if json is not None else orjson.dumps(event)
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), event["type"].encode(), data)


def job_frame(event: Event, live: Encoded | None) -> bytes:
    """An event as a one-job stream sends it: its id is its seq. A live event's frame is built once,
    by the first stream that sends it, and shared by every other stream following the job."""
    if live is None:
        return sse_frame(event, str(event["seq"]))
    if live.frame is None:
        live.frame = sse_frame(event, str(event["seq"]), live.json)
    return live.frame


class JobSetIds:
    """The event ids of a stream of several jobs: an opaque `<digest of the job set>-<seq>.<seq>…`,
    the seq of the last event sent of every job, so that one Last-Event-ID resumes them all."""

    def __init__(self, job_ids: Iterable[str]) -> None:
        self.jobs = sorted(set(job_ids))
        self.digest = hashlib.sha256(",".join(self.jobs).encode()).hexdigest()[:8]

    def encode(self, sent: Mapping[str, int], event: Event) -> str:
        """The id of `event`, with `sent` the follower's cursors: those of the other jobs are as of
        this event (what the follower hands over at once is all of one job)."""
        job, seq = event["job_id"], event["seq"]
        return f"{self.digest}-" + ".".join(str(seq if j == job else sent[j]) for j in self.jobs)

    def decode(self, text: str) -> dict[str, int]:
        digest, _, seqs = text.partition("-")
        parts = seqs.split(".")
        values = [seq for p in parts if (seq := decimal(p, hi=MAX_SEQ)) is not None]
        if digest != self.digest or len(values) != len(parts) or len(values) != len(self.jobs):
            raise invalid(["header", "Last-Event-ID"], "Last-Event-ID is not a cursor of this set of jobs")
        return dict(zip(self.jobs, values, strict=True))


async def _pump(stream: EventStream, sub: Subscriber, follower: Follower, ids: JobSetIds | None) -> None:
    """Backlog first, then live events, until every job has sent its terminal event."""

    async def send(event: Event, live: Encoded | None = None) -> None:
        if ids is None:
            await stream.send(job_frame(event, live))
        else:
            json = live.json if live is not None else None
            await stream.send(sse_frame(event, ids.encode(follower.seqs, event), json))

    async for event in follower.backlog():
        await send(event)
    while not follower.done:
        item = await stream.next_item(sub)
        if item is None:
            return
        if item is RESYNC:
            async for event in follower.backlog():
                await send(event)
        elif item.event is not None:
            for event in await follower.admit(item.event):
                await send(event, item.encoded if event is item.event else None)


def _scope(principal: Principal, job_ids: Iterable[str]) -> str | None:
    if principal.job_scope is not None and any(j != principal.job_scope for j in job_ids):
        raise Problem(404, "this stream token opens only the events of its own job", slug="not-found")
    return principal.scope()


def _parse_job_ids(raw: Iterable[str], loc: list[str]) -> list[UUID]:
    ids: list[UUID] = []
    for text in raw:
        try:
            ids.append(UUID(text))
        except ValueError:
            raise invalid(loc, f"{text!r} is not a job id") from None
    return ids


async def _serve(request: web.Request, job_ids: list[UUID], single: bool) -> web.StreamResponse:
    principal = request[PRINCIPAL]
    keys = [str(j) for j in job_ids]
    scope = _scope(principal, keys)
    cursors = dict.fromkeys(keys, 0)
    ids = None if single else JobSetIds(keys)
    last = _last_event_id(request)
    if last is not None:
        if ids is not None:
            cursors = ids.decode(last)
        elif (seq := decimal(last, hi=MAX_SEQ)) is not None:
            cursors[keys[0]] = seq
        else:
            raise invalid(["header", "Last-Event-ID"], "Last-Event-ID must be an event id of this stream")
    hub = request.app[HUB]
    with (
        request.app[STREAM_LIMITER].hold(principal),
        hub.subscription(
            Subscriber(principal, hard_limit=request.app[SETTINGS].stream_queue_max), jobs=keys
        ) as sub,
    ):
        # subscribed first, then the state read: nothing committed in between is missed
        rows = await jobstore.get_jobs(request.app[DB], job_ids, scope)
        found = {str(r["id"]): r for r in rows}
        missing = [j for j in keys if j not in found]
        if missing:
            raise Problem(404, f"no job {missing[0]}", slug="not-found")
        backlog = stored_backlog(request.app[DB], scope, stop=lambda: sub.closed)
        follower = Follower(
            backlog,
            cursors,
            finished=(j for j, r in found.items() if r["status"] in TERMINAL and cursors[j] >= r["last_seq"]),
        )
        if follower.done:
            # the client has everything: 204 makes EventSource stop instead of reconnecting
            return web.Response(status=204)
        stream = EventStream(request)
        return await stream.serve(sub, lambda: _pump(stream, sub, follower, ids), "stream")


@routes.get("/v1/jobs/{job_id}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    try:
        job_id = UUID(request.match_info["job_id"])
    except ValueError:
        raise Problem(404, f"no job {request.match_info['job_id']}", slug="not-found") from None
    return await _serve(request, [job_id], single=True)


@routes.get("/v1/events")
async def many_events(request: web.Request) -> web.StreamResponse:
    raw = [j for j in request.query.get("jobs", "").split(",") if j]
    if not raw:
        raise invalid(["query", "jobs"], "name the jobs to follow: ?jobs=id1,id2,…")
    job_ids = list(dict.fromkeys(_parse_job_ids(raw, ["query", "jobs"])))
    if len(job_ids) > MAX_JOBS:
        raise invalid(["query", "jobs"], f"one stream follows at most {MAX_JOBS} jobs")
    return await _serve(request, job_ids, single=False)


# ---- a batch's stream ------------------------------------------------------------------------
# A batch's events are its state, not a history: a `progress` event carries its counts and progress
# as they are, so a client that missed some loses nothing by getting only the newest. Its id is the
# batch's version (the sum of its jobs' last_seq, which grows with every event of any of them); the
# terminal event's id is one more than the last version (batches.last_seq). A reconnect with the
# Last-Event-ID of the current version waits for the next change; after the terminal event, 204.

# progress events of one batch stream are at least this far apart (the newest state wins)
BATCH_COALESCE_S = 0.25
# a batch stream re-reads the batch this often even without a poke (a publish may have been lost)
BATCH_RECHECK_S = 2.0


async def _batch_pump(
    request: web.Request,
    stream: EventStream,
    sub: Subscriber,
    batch_id: UUID,
    scope: str | None,
    sent: int | None,
) -> None:
    pool = request.app[DB]
    last_sent_at = 0.0
    while True:
        row = await batchstore.get_batch(pool, batch_id, scope)
        if row is None:
            return  # gone (purged) while followed
        if row["settled_at"] is not None:
            view = batch_view(row, None)
            frame = orjson.dumps(batch_event(view, row["status"], row["finished_at"]))
            await stream.send(
                b"id: %d\nevent: %s\ndata: %s\n\n" % (row["last_seq"], row["status"].encode(), frame)
            )
            return
        tally = (await jobstore.batch_tallies(pool, [batch_id])).get(batch_id)
        version = tally.version if tally is not None else 0
        if version != sent:
            view = batch_view(row, tally)
            frame = orjson.dumps(batch_event(view, "progress", row["updated_at"]))
            await stream.send(b"id: %d\nevent: progress\ndata: %s\n\n" % (version, frame))
            sent, last_sent_at = version, time.monotonic()
        while True:
            sub.last_write = time.monotonic()
            item = await sub.get(timeout=BATCH_RECHECK_S)
            if sub.closed or sub.overflowed:
                return
            if item is HEARTBEAT:
                await stream.response.write(b": keepalive\n\n")
                continue
            break
        if item is BATCH_CHANGED or item is RESYNC:
            # coalesce: whatever else happens before the next frame is due folds into one read
            await asyncio.sleep(max(0.0, last_sent_at + BATCH_COALESCE_S - time.monotonic()))


@routes.get("/v1/batches/{batch_id}/events")
async def batch_events(request: web.Request) -> web.StreamResponse:
    try:
        batch_id = UUID(request.match_info["batch_id"])
    except ValueError:
        raise Problem(404, f"no batch {request.match_info['batch_id']}", slug="not-found") from None
    principal = request[PRINCIPAL]
    if principal.job_scope is not None and principal.job_scope != str(batch_id):
        raise Problem(
            404, "this stream token opens only the events of its own job or batch", slug="not-found"
        )
    scope = principal.scope()
    last = _last_event_id(request)
    sent = None
    if last is not None and (sent := decimal(last, hi=MAX_SEQ)) is None:
        raise invalid(["header", "Last-Event-ID"], "Last-Event-ID must be an event id of this stream")
    hub = request.app[HUB]
    with (
        request.app[STREAM_LIMITER].hold(principal),
        hub.subscription(
            Subscriber(principal, hard_limit=request.app[SETTINGS].stream_queue_max), batches=[str(batch_id)]
        ) as sub,
    ):
        # subscribed first, then the state read: no change committed in between is missed
        row = await batchstore.get_batch(request.app[DB], batch_id, scope)
        if row is None:
            raise Problem(404, f"no batch {batch_id}", slug="not-found")
        if row["settled_at"] is not None and sent is not None and sent >= row["last_seq"]:
            # the client has the terminal event: 204 makes EventSource stop instead of reconnecting
            return web.Response(status=204)
        stream = EventStream(request)
        return await stream.serve(
            sub, lambda: _batch_pump(request, stream, sub, batch_id, scope, sent), "batch stream"
        )
