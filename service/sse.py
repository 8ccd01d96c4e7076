"""Server-sent events: one job (`GET /v1/jobs/{id}/events`) or many on one stream
(`GET /v1/events?jobs=…`), replayed from PostgreSQL and continued live from the hub, with no gap
and no duplicate across reconnects."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable
from uuid import UUID

from aiohttp import web

from jobwire import db, jobstore
from jobwire.apikeys import Principal
from jobwire.events import Event, stored_event
from jobwire.job import TERMINAL
from jobwire.logs import get_logger
from service import metrics
from service.http import MAX_SEQ, decimal
from service.hub import HEARTBEAT, RESYNC, Item, Subscriber, sse_frame
from service.problems import Problem, invalid
from service.state import DB, HUB, PRINCIPAL, SETTINGS, STREAM_LIMITER

log = get_logger("jobwire.sse")
routes = web.RouteTableDef()
SSE_DELIVERED = metrics.EVENTS_DELIVERED.labels("sse")

MAX_JOBS = 100


def _last_event_id(request: web.Request) -> str | None:
    return request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or None


def _terminal(event: Event) -> bool:
    return event["status"] in TERMINAL


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


class Cursor:
    """Per-job seq of the last event sent. Single-job streams use the seq itself as the SSE id;
    multi-job streams an opaque `<digest of the job set>-<seq>.<seq>…` covering every job."""

    def __init__(self, job_ids: Iterable[str]) -> None:
        self.jobs = sorted(set(job_ids))
        self.seqs = dict.fromkeys(self.jobs, 0)
        self.digest = hashlib.sha256(",".join(self.jobs).encode()).hexdigest()[:8]

    def encode(self) -> str:
        return f"{self.digest}-" + ".".join(str(self.seqs[j]) for j in self.jobs)

    def restore(self, text: str) -> None:
        digest, _, seqs = text.partition("-")
        parts = seqs.split(".")
        values = [seq for p in parts if (seq := decimal(p, hi=MAX_SEQ)) is not None]
        if digest != self.digest or len(values) != len(parts) or len(values) != len(self.jobs):
            raise invalid(["header", "Last-Event-ID"], "Last-Event-ID is not a cursor of this set of jobs")
        self.seqs = dict(zip(self.jobs, values, strict=True))


async def _pump(
    stream: EventStream,
    sub: Subscriber,
    cursor: Cursor,
    finished: set[str],
    single: bool,
    scope: str | None,
) -> None:
    """Backlog first, then live events, until every job has sent its terminal event."""
    pool = stream.request.app[DB]

    async def backfill(only_jobs: Iterable[str] | None = None) -> None:
        jobs = cursor.jobs if only_jobs is None else list(only_jobs)
        wanted = {UUID(j): cursor.seqs[j] for j in jobs if j not in finished}
        async for page in jobstore.event_pages(pool, wanted, scope):
            if sub.closed:
                return  # the key was revoked or the api is stopping: no point reading on
            for row in page:
                await deliver(stored_event(row), from_backlog=True)

    async def deliver(
        event: Event,
        *,
        from_backlog: bool = False,
        raw: bytes | None = None,
        frame: bytes | None = None,
    ) -> None:
        job = event["job_id"]
        seq = event["seq"]
        if job not in cursor.seqs or job in finished or seq <= cursor.seqs[job]:
            return  # not ours, already done, or already sent (backlog and live overlap)
        if not from_backlog and seq > cursor.seqs[job] + 1 and event["type"] != "progress":
            # a gap before a state change: fetch what is missing (progress in a gap was coalesced)
            await backfill([job])
            if seq <= cursor.seqs[job]:
                return
        cursor.seqs[job] = seq
        if single:
            # the id is the event's seq: the hub's frame, shared by every stream of the job
            await stream.send(frame or sse_frame(event, str(seq), raw))
        else:
            await stream.send(sse_frame(event, cursor.encode(), raw))
        if _terminal(event):
            finished.add(job)

    await backfill()
    while len(finished) < len(cursor.jobs):
        item = await stream.next_item(sub)
        if item is None:
            return
        if item is RESYNC:
            await backfill()
        elif item.event is not None:
            await deliver(item.event, raw=item.raw, frame=item.frame)


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
    cursor = Cursor(keys)
    last = _last_event_id(request)
    if last is not None:
        if single:
            seq = decimal(last, hi=MAX_SEQ)
            if seq is None:
                raise invalid(["header", "Last-Event-ID"], "Last-Event-ID must be an event id of this stream")
            cursor.seqs[keys[0]] = seq
        else:
            cursor.restore(last)
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
        finished = {
            j for j, r in found.items() if r["status"] in TERMINAL and cursor.seqs[j] >= r["last_seq"]
        }
        if len(finished) == len(keys):
            # the client has everything: 204 makes EventSource stop instead of reconnecting
            return web.Response(status=204)
        stream = EventStream(request)
        await stream.open(sub)
        try:
            await _pump(stream, sub, cursor, finished, single, scope)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client left; it resumes with Last-Event-ID
        except Exception as exc:
            # the headers are out, so no problem document: end the stream, the client resumes
            if isinstance(exc, db.UNAVAILABLE):
                log.warning("stream ended: database unavailable", error=repr(exc))
            else:
                log.exception("stream ended by an error")
        finally:
            stream.close()
        return stream.response


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
