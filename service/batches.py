"""/v1/batches: submit many jobs as one (all or nothing), read, list and cancel them.

A batch is stored with all of its jobs in one transaction (one statement for the jobs, as the
submitter's group commit writes them) and enqueued with one Redis call, so a 1,000-job batch costs
about as much as one group-committed flush, not 1,000 submissions. Its counts and progress are read
from its jobs (jobwire/batch.py); the settle loop (jobwire/batches.py) ends it once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from aiohttp import web

from jobwire import batchstore, dependencies, events, jobstore
from jobwire.apikeys import Principal
from jobwire.batch import Tally, batch_view
from jobwire.events import EventType
from jobwire.ids import new_id
from jobwire.logs import get_logger
from jobwire.queue import add_publish, enqueue, queued
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from service import metrics
from service.http import (
    body_model,
    check_destination,
    idempotency_key,
    job_params,
    json_response,
    query_cursor,
    query_int,
    read_json,
)
from service.problems import Problem, invalid
from service.schemas import SubmitBatch, TimesInvalid
from service.state import DB, KEYS, PRINCIPAL, REDIS, SETTINGS, TOKENS

log = get_logger("jobwire.api")
routes = web.RouteTableDef()


def _principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _not_found(batch_id: object) -> Problem:
    return Problem(404, f"no batch {batch_id}", slug="not-found")


def _batch_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["batch_id"])
    except ValueError:
        raise _not_found(request.match_info["batch_id"]) from None


def batch_location(request: web.Request, batch_id: object) -> str:
    return f"{request.app[SETTINGS].public_url or ''}/v1/batches/{batch_id}"


def view(request: web.Request, row: jobstore.Row, tally: Tally | None) -> dict[str, Any]:
    # the stream token opens this batch's events only, and names the key that minted it
    token = request.app[TOKENS].issue(str(row["id"]), row["tenant"], _principal(request).key_id)
    return batch_view(row, tally, base_url=request.app[SETTINGS].public_url or "", events_token=token)


async def read_views(request: web.Request, rows: list[jobstore.Row]) -> list[dict[str, Any]]:
    """The representations of these batches: the unsettled ones' tallies read in one query."""
    live = [r["id"] for r in rows if r["final_counts"] is None]
    tallies = await jobstore.batch_tallies(request.app[DB], live) if live else {}
    return [view(request, r, tallies.get(r["id"])) for r in rows]


# ---- submit ----------------------------------------------------------------------------------


async def _validate(
    request: web.Request, body: Any, batch_id: UUID
) -> tuple[SubmitBatch, list[jobstore.NewJob]]:
    """The batch's jobs, every one validated before anything is stored: the first fault is a 422
    whose `loc` names the job's index."""
    principal = _principal(request)
    sub = body_model(body, SubmitBatch)
    now = datetime.now(UTC)
    ids = [new_id() for _ in sub.jobs]
    jobs: list[jobstore.NewJob] = []
    foreign: dict[UUID, list[str | int]] = {}
    checked: set[str] = set()
    if sub.webhook_url is not None:
        await check_destination(request, sub.webhook_url, field="webhook_url")
        checked.add(sub.webhook_url)
    for i, job in enumerate(sub.jobs):
        loc: list[str | int] = ["body", "jobs", i]
        jt, params = job_params(request, job.type, job.params, loc=("body", "jobs", i))
        try:
            run_at, expires_at = job.resolve(now)
        except TimesInvalid as exc:
            raise invalid([*loc, exc.field], exc.detail) from None
        if job.webhook_url is not None and job.webhook_url not in checked:
            await check_destination(request, job.webhook_url, field=["jobs", i, "webhook_url"])
            checked.add(job.webhook_url)
        depends_on: list[UUID] = []
        for k, dep in enumerate(job.depends_on):
            if isinstance(dep, int):
                # only earlier jobs: a batch can hold no cycle
                if dep >= i:
                    raise invalid(
                        [*loc, "depends_on", k],
                        f"job {i} may depend only on earlier jobs of the batch (below {i}), not {dep}",
                        msg="not the index of an earlier job",
                        type_="dependency",
                    )
                depends_on.append(ids[dep])
            else:
                foreign.setdefault(dep, [*loc, "depends_on", k])
                depends_on.append(dep)
        jobs.append(
            jobstore.NewJob(
                id=ids[i],
                tenant=principal.tenant,
                type=job.type,
                params=params,
                priority=job.priority.value,
                max_attempts=jt.max_attempts,
                webhook_url=job.webhook_url,
                run_at=run_at,
                expires_at=expires_at,
                labels=job.labels,
                batch_id=batch_id,
                depends_on=list(dict.fromkeys(depends_on)),
            )
        )
    if foreign:
        missing = await jobstore.missing_dependencies(request.app[DB], principal.tenant, list(foreign))
        for dep, loc in foreign.items():
            if dep in missing:
                raise invalid(loc, f"no job {dep}", msg="unknown job", type_="dependency")
    return sub, jobs


@routes.post("/v1/batches")
async def submit_batch(request: web.Request) -> web.Response:
    principal = _principal(request)
    idem_key = idempotency_key(request)
    body = await read_json(request)
    batch_id = new_id()
    sub, jobs = await _validate(request, body, batch_id)
    pool = request.app[DB]
    async with pool.acquire() as conn, conn.transaction():
        if idem_key is not None:
            # the key's space is the tenant's, shared with jobs: the hash says which kind it was for
            request_hash = hashlib.sha256(
                b"batch:" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
            ).digest()
            claimed = await jobstore.claim_idempotency_key(
                conn, principal.tenant, idem_key, request_hash, batch_id, 202
            )
            if not claimed:
                return await _replay(request, conn, idem_key, request_hash)
        row = await batchstore.insert_batch(
            conn, batch_id, principal.tenant, len(jobs), sub.labels, sub.webhook_url
        )
        rows = await jobstore.insert_jobs(conn, jobs)
    # Durable: the answer is 202 whatever Redis does now (the reconciler enqueues what is missing).
    # A job waiting for its dependencies is enqueued when they complete, not now.
    runnable = [rows[j.id] for j in jobs if rows[j.id]["status"] in ("pending", "scheduled")]
    try:
        await enqueue(
            request.app[REDIS],
            request.app[KEYS],
            [queued(r) for r in runnable],
            [events.message(rows[j.id], EventType.CREATED) for j in jobs],
        )
    except REDIS_UNAVAILABLE as exc:
        log.warning(
            "enqueue failed; the reconciler will enqueue these jobs", batch_id=str(batch_id), error=str(exc)
        )
    # a job depending on an existing job that ended while the batch was being stored is settled now
    rows = await dependencies.after_insert(pool, request.app[REDIS], request.app[KEYS], jobs, rows)
    for j in jobs:
        metrics.count_submitted(j.type, j.priority)
    tally = Tally()
    for r in rows.values():
        tally.add(r["status"], 1, float(r["progress"]), int(r["last_seq"]))
    return json_response(
        view(request, row, tally), status=202, headers={"Location": batch_location(request, batch_id)}
    )


async def _replay(request: web.Request, conn: jobstore.Conn, key: str, request_hash: bytes) -> web.Response:
    """The answer to a repeated Idempotency-Key: the batch it made (202), or 422 when the key was
    used with another body (or for a job)."""
    principal = _principal(request)
    first = await jobstore.get_idempotency_key(conn, principal.tenant, key)
    assert first is not None  # the conflict proves the row exists
    if bytes(first["request_hash"]) != request_hash:
        raise Problem(
            422,
            "this Idempotency-Key was already used with a different request body",
            slug="idempotency-key-reuse",
        )
    row = await batchstore.get_batch(conn, first["job_id"], principal.tenant)
    if row is None:  # pragma: no cover - the batch row commits with the key row
        raise Problem(409, "the batch of this Idempotency-Key no longer exists", slug="idempotency-gone")
    (answer,) = await read_views(request, [row])
    return json_response(
        answer,
        status=202,
        headers={"Location": batch_location(request, row["id"]), "Idempotent-Replayed": "true"},
    )


# ---- read ------------------------------------------------------------------------------------


@routes.get("/v1/batches/{batch_id}")
async def get_batch(request: web.Request) -> web.Response:
    batch_id = _batch_id(request)
    row = await batchstore.get_batch(request.app[DB], batch_id, _principal(request).scope())
    if row is None:
        raise _not_found(batch_id)
    (answer,) = await read_views(request, [row])
    return json_response(answer)


@routes.get("/v1/batches")
async def list_batches(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=50, lo=1, hi=200)
    rows = await batchstore.list_batches(
        request.app[DB], _principal(request).scope(), limit + 1, query_cursor(request)
    )
    next_cursor = jobstore.encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return json_response({"items": await read_views(request, rows[:limit]), "next_cursor": next_cursor})


# ---- cancel ----------------------------------------------------------------------------------


@routes.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.Response:
    """The batch becomes `cancelled` and every unfinished job in it is cancelled as a job cancel
    does it: unstarted ones at once, running ones interrupted by their workers. The batch settles
    (its terminal event and webhook) when the last of them has ended."""
    batch_id = _batch_id(request)
    scope = _principal(request).scope()
    pool, redis, keys = request.app[DB], request.app[REDIS], request.app[KEYS]
    async with pool.acquire() as conn, conn.transaction():
        row = await batchstore.mark_cancelled(conn, batch_id, scope)
        if row is None:
            current = await batchstore.get_batch(conn, batch_id, scope)
            if current is None:
                raise _not_found(batch_id)
            raise Problem(
                409,
                f"the batch is {current['status']}; only a running batch can be cancelled",
                slug="invalid-state",
            )
        cancelled, flagged = await jobstore.cancel_batch_jobs(conn, batch_id)
    log.info("batch cancelled", batch_id=str(batch_id), cancelled=len(cancelled), interrupting=len(flagged))
    if cancelled:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                add_publish(pipe, keys, [events.message(r, EventType.CANCELLED) for r in cancelled])
                # off the queue: a worker offered one would find it cancelled and do nothing
                for r in cancelled:
                    pipe.zrem(keys.queue, keys.arq_job_id(r["id"]))
                    pipe.zrem(keys.promote, keys.arq_job_id(r["id"]))
                    pipe.delete(keys.arq_job_key(r["id"]))
                await pipe.execute()
        except REDIS_UNAVAILABLE as exc:
            log.warning(
                "cancelled batch jobs not removed from the queue", batch_id=str(batch_id), error=str(exc)
            )
        # jobs outside the batch that depend on these end too (DependencyFailed)
        await dependencies.after_ended(pool, redis, keys, cancelled)
    fresh = await batchstore.get_batch(pool, batch_id, scope)
    assert fresh is not None
    (answer,) = await read_views(request, [fresh])
    return json_response(answer)
