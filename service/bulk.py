"""POST /v1/jobs/bulk: cancel or retry every job a filter matches.

The matching ids are read once, in one statement (its snapshot: a job committed after the action
started is never touched, however long the action runs), then acted on a chunk at a time, each
chunk one short statement through the same transitions as the single-job routes (events, seqs,
owed webhook deliveries, a running job's cancel request, a retried job's enqueue), so that a large
action never holds row locks long enough to stall submissions or workers.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from jobwire import dependencies, events, jobstore
from jobwire.apikeys import Principal
from jobwire.events import EventType
from jobwire.logs import get_logger
from jobwire.queue import add_dequeue, add_publish, enqueue, startable
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from service.http import body_model, json_response, read_json
from service.problems import invalid
from service.schemas import BulkAction
from service.state import DB, KEYS, PRINCIPAL, REDIS

log = get_logger("jobwire.api")
routes = web.RouteTableDef()

# ids per statement: a chunk's row locks are held for a few milliseconds
CHUNK = 500


def job_filter(principal: Principal, body: BulkAction) -> jobstore.JobFilter:
    """The filter the body names, scoped to the caller's tenant: an admin key names the tenant it
    acts on (it never acts on every tenant at once), any other key acts on its own."""
    f = body.filter
    if principal.is_admin:
        if f.tenant is None:
            raise invalid(
                ["body", "filter", "tenant"],
                "an admin key acts on one tenant's jobs at a time: name it in filter.tenant",
                msg="required for an admin key",
                type_="missing",
            )
        tenant = f.tenant
    else:
        if f.tenant is not None and f.tenant != principal.tenant:
            raise invalid(
                ["body", "filter", "tenant"],
                "only an admin key can act on another tenant's jobs",
                msg="needs an admin key",
                type_="scope",
            )
        tenant = principal.tenant
    scoped = jobstore.JobFilter(
        tenant=tenant,
        statuses=list(f.status) if f.status else None,
        type=f.type,
        labels=f.label or {},
        batch_id=f.batch_id,
        schedule_id=f.schedule_id,
        created_before=f.created_before,
    )
    if not scoped.narrows() and not body.all:
        raise invalid(
            ["body", "filter"],
            "the filter is empty: give status, type, label, batch_id, schedule_id or created_before,"
            ' or "all": true to act on every job',
            msg="empty filter without all: true",
            type_="missing",
        )
    return scoped


@routes.post("/v1/jobs/bulk")
async def bulk_action(request: web.Request) -> web.Response:
    principal: Principal = request[PRINCIPAL]
    body = body_model(await read_json(request), BulkAction)
    f = job_filter(principal, body)
    pool = request.app[DB]
    if body.dry_run:
        matched, changed = await jobstore.bulk_count(pool, f, body.action)
        return json_response({"matched": matched, "changed": changed})
    snapshot = await jobstore.bulk_snapshot(pool, f)
    changed = 0
    for chunk in jobstore.id_chunks(snapshot, CHUNK):
        if body.action == "cancel":
            cancelled, flagged = await jobstore.bulk_cancel(pool, chunk, f.statuses)
            changed += len(cancelled) + flagged
            await _cancelled(request, cancelled)
        else:
            retried = await jobstore.bulk_retry(pool, chunk, f.statuses)
            changed += len(retried)
            await _retried(request, retried)
        await asyncio.sleep(0)  # the loop serves other requests between chunks
    matched = len(snapshot) // 16
    log.info(
        "bulk action",
        tenant=f.tenant,
        action=body.action,
        matched=matched,
        changed=changed,
        key=principal.key_id,
    )
    return json_response({"matched": matched, "changed": changed})


async def _cancelled(request: web.Request, rows: list[jobstore.Row]) -> None:
    """Off the queue, and their `cancelled` events published, in one round trip (best effort, as for
    one job: a worker offered one finds it cancelled and does nothing; streams replay the event)."""
    if not rows:
        return
    keys = request.app[KEYS]
    try:
        async with request.app[REDIS].pipeline(transaction=False) as pipe:
            for row in rows:
                add_dequeue(pipe, keys, row["id"])
            add_publish(pipe, keys, [events.message(r, EventType.CANCELLED) for r in rows])
            await pipe.execute()
    except REDIS_UNAVAILABLE as exc:
        log.warning("cancelled jobs not removed from the queue", count=len(rows), error=str(exc))
    # their waiting dependents end too (DependencyFailed), now rather than at the next sweep (which
    # settles what this misses, within JOBWIRE_DEPENDENCY_SWEEP_S)
    try:
        await dependencies.after_ended(request.app[DB], request.app[REDIS], keys, rows)
    except Exception:
        log.exception("dependents of cancelled jobs not settled; the sweep will", count=len(rows))


async def _retried(request: web.Request, rows: list[jobstore.Row]) -> None:
    """Queued as of now, behind jobs already waiting, with their `retrying` events: one round trip. A
    failure leaves them `pending` in PostgreSQL, where the reconciler finds and enqueues them."""
    if not rows:
        return
    try:
        await enqueue(
            request.app[REDIS],
            request.app[KEYS],
            # a job whose dependencies have not all completed is `waiting` again, off the queue
            startable(rows, rows[0]["updated_at"]),
            [events.message(r, EventType.RETRYING) for r in rows],
        )
    except REDIS_UNAVAILABLE as exc:
        log.warning(
            "retried jobs not enqueued; the reconciler will enqueue them", count=len(rows), error=str(exc)
        )
    waiting = [r["id"] for r in rows if r["status"] == "waiting"]
    if waiting:
        # a parent that completed while the chunk was being written releases them here (else the
        # sweep does)
        try:
            await dependencies.settle(request.app[DB], request.app[REDIS], request.app[KEYS], waiting)
        except Exception:
            log.exception("retried waiting jobs not settled; the sweep will", count=len(waiting))
