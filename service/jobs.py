"""/v1/jobs: submit, read (with ETag and long-poll), list, cancel, retry."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from aiohttp import web

from jobwire import dependencies, events, jobstore
from jobwire.apikeys import Principal
from jobwire.events import EventType
from jobwire.ids import new_id
from jobwire.job import TERMINAL, Status, job_view
from jobwire.logs import get_logger
from jobwire.queue import dequeue, enqueue, move, publish, queued, startable
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from service import metrics
from service.follower import Follower
from service.http import (
    body_model,
    check_destination,
    idempotency_key,
    if_none_match,
    job_params,
    json_response,
    prefer_wait,
    query_cursor,
    query_int,
    query_labels,
    query_uuid,
    read_json,
)
from service.hub import Subscriber
from service.problems import Problem, invalid
from service.schemas import MoveJob, SubmitJob, TimesInvalid
from service.state import (
    DB,
    HUB,
    KEYS,
    PRINCIPAL,
    REDIS,
    SETTINGS,
    STREAM_LIMITER,
    SUBMITTER,
    TOKENS,
)

log = get_logger("jobwire.api")
routes = web.RouteTableDef()

MAX_WAIT_S = 60
# how often a waiting request re-reads PostgreSQL even without a notification (a lost publish)
RECHECK_S = 5.0
# a first request that died before recording its answer stops blocking its key after this long
IDEMPOTENCY_STALE_S = MAX_WAIT_S + 15


# ---- helpers ---------------------------------------------------------------------------------


def _principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _job_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["job_id"])
    except ValueError:
        raise _not_found(request.match_info["job_id"]) from None


def _not_found(job_id: object) -> Problem:
    return Problem(404, f"no job {job_id}", slug="not-found")


def etag(row: jobstore.Row) -> str:
    # every change of a job bumps last_seq, so it versions the representation; moving a scheduled
    # job (PATCH) is no event, so its run_at is part of the version too
    if row["run_at"] is not None and row["status"] == Status.SCHEDULED:
        return f'W/"{row["last_seq"]}.{int(row["run_at"].timestamp() * 1_000_000)}"'
    return f'W/"{row["last_seq"]}"'


def _view(request: web.Request, row: jobstore.Row) -> dict[str, Any]:
    # the token names the key that minted it: it stops working when that key is revoked
    token = request.app[TOKENS].issue(str(row["id"]), row["tenant"], _principal(request).key_id)
    return job_view(row, events_token=token, base_url=request.app[SETTINGS].public_url or "")


def job_location(request: web.Request, job_id: object) -> str:
    return f"{request.app[SETTINGS].public_url or ''}/v1/jobs/{job_id}"


def job_response(request: web.Request, row: jobstore.Row, status: int = 200, **headers: str) -> web.Response:
    hdrs = {"ETag": etag(row), **headers}
    if row["status"] not in TERMINAL:
        hdrs["Retry-After"] = "1"
    return json_response(_view(request, row), status=status, headers=hdrs)


async def _wait_until(
    request: web.Request, job_id: UUID, tenant: str | None, timeout: float, *, done: Any
) -> jobstore.Row | None:
    """Hold until `done(row)` or the timeout; returns the last row read. The caller holds a slot of
    the stream limiter: a held request is a connection like a stream."""
    pool = request.app[DB]
    deadline = time.monotonic() + timeout
    job = str(job_id)
    # the answer is the job's row, which holds the effect of every event: the follower only says
    # whether an event is newer than the row read last (no backlog to read)
    follower = Follower(None)
    with request.app[HUB].subscription(Subscriber(_principal(request)), jobs=[job]) as sub:
        row = await jobstore.get_job(pool, job_id, tenant)
        while row is not None and not done(row):
            follower.follow(job, row["last_seq"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            item = await sub.get(min(remaining, RECHECK_S))
            if item is not None and item.event is not None and not await follower.admit(item.event):
                continue  # the row read holds it already
            # a newer event, a resync marker, or a quiet while (a publish may have been lost)
            row = await jobstore.get_job(pool, job_id, tenant)
    return row


async def _enqueue_one(
    request: web.Request, row: jobstore.Row, event: EventType, queued_at: datetime
) -> bool:
    """Enqueue a committed job (unless it is waiting for its dependencies) and publish its event;
    False (logged) when Redis is unreachable."""
    try:
        await enqueue(
            request.app[REDIS],
            request.app[KEYS],
            startable([row], queued_at),
            [events.message(row, event)],
        )
    except REDIS_UNAVAILABLE as exc:
        log.warning("enqueue failed; the reconciler will enqueue it", job_id=str(row["id"]), error=str(exc))
        return False
    return True


# ---- submit ----------------------------------------------------------------------------------


def _times_problem(exc: TimesInvalid) -> Problem:
    return invalid(["body", exc.field], exc.detail)


def _validate_submission(request: web.Request, body: Any) -> tuple[SubmitJob, dict[str, Any], int]:
    sub = body_model(body, SubmitJob)
    jt, params = job_params(request, sub.type, sub.params)
    return sub, params, jt.max_attempts


@routes.post("/v1/jobs")
async def submit(request: web.Request) -> web.Response:
    principal = _principal(request)
    idem_key = idempotency_key(request)
    wait_s = prefer_wait(request, request.app[SETTINGS].max_wait_s)
    body = await read_json(request)
    sub, params, max_attempts = _validate_submission(request, body)
    try:
        run_at, expires_at = sub.resolve(datetime.now(UTC))
    except TimesInvalid as exc:
        raise _times_problem(exc) from None
    if sub.webhook_url is not None:
        await check_destination(request, sub.webhook_url, field="webhook_url")
    job = jobstore.NewJob(
        id=new_id(),
        tenant=principal.tenant,
        type=sub.type,
        params=params,
        priority=sub.priority.value,
        max_attempts=max_attempts,
        webhook_url=sub.webhook_url,
        run_at=run_at,
        expires_at=expires_at,
        labels=sub.labels,
        depends_on=sub.depends_on,
    )
    pool = request.app[DB]
    if sub.depends_on:
        await _check_dependencies(pool, principal.tenant, sub.depends_on)
    if idem_key is None:
        # group commit: durable (committed) before we answer, sharing the commit with its neighbours
        row, enqueued = await request.app[SUBMITTER].submit(job)
    else:
        request_hash = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()
        row, replayed_status = await _insert_idempotent(pool, job, idem_key, request_hash, wait_s is None)
        if replayed_status is not None:
            return job_response(
                request,
                row,
                replayed_status,
                Location=job_location(request, row["id"]),
                **{"Idempotent-Replayed": "true"},
            )

        enqueued = await _enqueue_one(request, row, EventType.CREATED, row["created_at"])
        row = await _settle_if_waiting(request, row)

    # The job is durable: from here on the answer is 202 whatever Redis did, because a job that
    # did not reach the queue is put there by the reconciler.
    metrics.count_submitted(row["type"], row["priority"])
    status, headers = 202, {"Location": job_location(request, row["id"])}
    if wait_s and enqueued:
        # the job exists already: at the key's cap of held connections the preference is not
        # applied (the usual 202) rather than refused
        with request.app[STREAM_LIMITER].hold_if_free(principal) as slot:
            final = None
            if slot:
                final = await _wait_until(
                    request, row["id"], principal.scope(), wait_s, done=lambda r: r["status"] in TERMINAL
                )
        if final is not None:
            row = final
            if row["status"] in TERMINAL:
                status, headers["Preference-Applied"] = 200, f"wait={wait_s}"
    if idem_key is not None and wait_s is not None:
        await jobstore.set_idempotent_status(pool, principal.tenant, idem_key, status)
    return job_response(request, row, status, **headers)


async def _check_dependencies(pool: asyncpg.Pool, tenant: str, depends_on: list[UUID]) -> None:
    """422 naming the first id in depends_on that is no job of the tenant (another tenant's job is
    as unknown as one that never existed)."""
    missing = await jobstore.missing_dependencies(pool, tenant, depends_on)
    for i, dep in enumerate(depends_on):
        if dep in missing:
            raise invalid(["body", "depends_on", i], f"no job {dep} to depend on")


async def _settle_if_waiting(request: web.Request, row: jobstore.Row) -> jobstore.Row:
    """A job stored `waiting` whose last parent ended while it was being stored is settled here;
    its row as it is now."""
    if row["status"] != Status.WAITING:
        return row
    try:
        changed = await dependencies.settle(
            request.app[DB], request.app[REDIS], request.app[KEYS], [row["id"]]
        )
    except Exception:
        log.exception("waiting job not settled; the sweep will", job_id=str(row["id"]))
        return row
    return changed[0] if changed else row


async def _insert_idempotent(
    pool: asyncpg.Pool, job: jobstore.NewJob, key: str, request_hash: bytes, answer_known: bool
) -> tuple[jobstore.Row, int | None]:
    """Insert the job under its idempotency key and return (row, None); or, when the key was used
    first by another request, return (its job, the status code it was answered with).

    The key row is inserted in the job's transaction: a concurrent request with the same key blocks
    on it until the first commits, then replays it (or, if the first is still holding its answer
    for `Prefer: wait`, gets 409)."""
    async with pool.acquire() as conn, conn.transaction():
        claimed = await jobstore.claim_idempotency_key(
            conn, job.tenant, key, request_hash, job.id, 202 if answer_known else None
        )
        if claimed:
            return await jobstore.insert_job(conn, job), None
        first = await jobstore.get_idempotency_key(conn, job.tenant, key)
        assert first is not None  # the conflict proves the row exists, and keys are never deleted early
        original = await jobstore.get_job(conn, first["job_id"], job.tenant)
    if bytes(first["request_hash"]) != request_hash:
        raise Problem(
            422,
            "this Idempotency-Key was already used with a different request body",
            slug="idempotency-key-reuse",
        )
    status_code = first["status_code"]
    if status_code is None and first["age"].total_seconds() < IDEMPOTENCY_STALE_S:
        raise Problem(
            409,
            "a request with this Idempotency-Key is still being processed; retry shortly",
            slug="idempotency-in-progress",
            headers={"Retry-After": "1"},
        )
    if original is None:  # pragma: no cover - the job row commits with the key row
        raise Problem(409, "the job of this Idempotency-Key no longer exists", slug="idempotency-gone")
    return original, status_code or 202


# ---- read ------------------------------------------------------------------------------------


@routes.get("/v1/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    scope = _principal(request).scope()
    # any N up to API.md's 60 is accepted; the hold is capped by JOBWIRE_MAX_WAIT_S
    wait_s = min(query_int(request, "wait", default=0, lo=0, hi=MAX_WAIT_S), request.app[SETTINGS].max_wait_s)
    tags = if_none_match(request)
    if wait_s and tags:
        # long-poll: hold while the client already has the current version (429 past the key's cap)
        with request.app[STREAM_LIMITER].hold(_principal(request)):
            row = await _wait_until(
                request, job_id, scope, wait_s, done=lambda r: etag(r).removeprefix("W/") not in tags
            )
    else:
        row = await jobstore.get_job(request.app[DB], job_id, scope)
    if row is None:
        raise _not_found(job_id)
    current = etag(row)
    if current.removeprefix("W/") in tags or "*" in tags:
        headers = {"ETag": current}
        if row["status"] not in TERMINAL:
            headers["Retry-After"] = "1"
        return web.Response(status=304, headers=headers)
    return job_response(request, row)


# ---- list ------------------------------------------------------------------------------------

_STATUSES = {s.value for s in Status}


@routes.get("/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    principal = _principal(request)
    limit = query_int(request, "limit", default=50, lo=1, hi=200)
    statuses = [s for s in request.query.get("status", "").split(",") if s]
    bad = [s for s in statuses if s not in _STATUSES]
    if bad:
        raise invalid(
            ["query", "status"],
            f"unknown status {bad[0]!r}; use one or more of {', '.join(sorted(_STATUSES))}",
            msg=f"unknown status {bad[0]!r}",
            type_="enum",
        )
    scope = principal.scope()
    tenant_filter = request.query.get("tenant")
    if tenant_filter:
        if not principal.is_admin and tenant_filter != principal.tenant:
            raise invalid(
                ["query", "tenant"],
                "only an admin key can list another tenant's jobs",
                msg="needs an admin key",
                type_="scope",
            )
        scope = tenant_filter
    after = query_cursor(request)
    schedule_id = query_uuid(request, "schedule_id")
    batch_id = query_uuid(request, "batch_id")
    rows = await jobstore.list_jobs(
        request.app[DB],
        tenant=scope,
        statuses=statuses or None,
        type_=request.query.get("type") or None,
        limit=limit + 1,
        after=after,
        schedule_id=schedule_id,
        labels=query_labels(request),
        batch_id=batch_id,
    )
    next_cursor = jobstore.encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return json_response({"items": [_view(request, r) for r in rows[:limit]], "next_cursor": next_cursor})


# ---- move a scheduled job ----------------------------------------------------------------------


@routes.patch("/v1/jobs/{job_id}")
async def move_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    scope = _principal(request).scope()
    move_to = body_model(await read_json(request), MoveJob)
    try:
        run_at = move_to.resolve(datetime.now(UTC))
    except TimesInvalid as exc:
        raise _times_problem(exc) from None
    pool = request.app[DB]
    row = await jobstore.move(pool, job_id, scope, run_at)
    if row is None:
        current = await jobstore.get_job(pool, job_id, scope)
        if current is None:
            raise _not_found(job_id)
        raise Problem(
            409, f"the job is {current['status']}; only a scheduled job can be moved", slug="invalid-state"
        )
    try:
        await move(request.app[REDIS], request.app[KEYS], queued(row))
    except REDIS_UNAVAILABLE as exc:
        # PostgreSQL holds the new time: a worker offered the job early defers it, and the
        # reconciler re-enqueues a job Redis lost at the time PostgreSQL holds
        log.warning("moved job not re-scored in the queue", job_id=str(job_id), error=str(exc))
    return job_response(request, row)


# ---- cancel and retry ------------------------------------------------------------------------


@routes.post("/v1/jobs/{job_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    scope = _principal(request).scope()
    pool, redis, keys = request.app[DB], request.app[REDIS], request.app[KEYS]
    # a job can move between the read and the write (a worker starts it): go round again
    for _ in range(3):
        row = await jobstore.get_job(pool, job_id, scope)
        if row is None:
            raise _not_found(job_id)
        status = Status(row["status"])
        if status.terminal:
            raise Problem(
                409,
                f"the job is {status.value}; only scheduled, waiting, pending or running jobs can be"
                " cancelled",
                slug="invalid-state",
            )
        if status in (Status.SCHEDULED, Status.WAITING, Status.PENDING):
            cancelled = await jobstore.cancel_pending(pool, job_id, scope)
            if cancelled is None:
                continue
            try:
                await dequeue(redis, keys, job_id)
                await publish(redis, keys, [events.message(cancelled, EventType.CANCELLED)])
            except REDIS_UNAVAILABLE as exc:
                log.warning("cancelled job not removed from the queue", job_id=str(job_id), error=str(exc))
            # the jobs waiting for it will never run: they end cancelled (DependencyFailed)
            await dependencies.after_ended(pool, redis, keys, [cancelled])
            return job_response(request, cancelled, 200)
        flagged = await jobstore.request_cancel(pool, job_id, scope)
        if flagged is None:
            continue
        # the worker running it sees the flag within a second and interrupts the function
        return job_response(request, flagged, 202)
    raise Problem(409, "the job kept changing state; try again", slug="invalid-state")


@routes.post("/v1/jobs/{job_id}/retry")
async def retry(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    scope = _principal(request).scope()
    row = await jobstore.retry(request.app[DB], job_id, scope)
    if row is None:
        current = await jobstore.get_job(request.app[DB], job_id, scope)
        if current is None:
            raise _not_found(job_id)
        raise Problem(
            409,
            f"the job is {current['status']}; only failed or cancelled jobs can be retried",
            slug="invalid-state",
        )
    # queued as of now, behind jobs that were already waiting (a job whose dependencies have not
    # all completed waits for them again, and is settled at once if one of them failed)
    await _enqueue_one(request, row, EventType.RETRYING, row["updated_at"])
    row = await _settle_if_waiting(request, row)
    return job_response(request, row, 202, Location=job_location(request, job_id))
