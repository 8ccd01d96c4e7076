"""/v1/schedules: create, list, read, change (pause, resume), delete, trigger now.

The timetable is checked when a schedule is written (cron, time zone, and the job's params by its
type's model), so the scheduler (jobwire/scheduler.py) only fires what was valid when written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from jobwire import jobstore, scheduler, schedulestore
from jobwire.ids import new_id
from jobwire.job import iso, job_view
from jobwire.jobstore import Row
from jobwire.timetable import Timetable, TimetableInvalid, expand, zone
from service.http import (
    body_model,
    check_destination,
    job_params,
    json_response,
    query_cursor,
    query_int,
    read_json,
)
from service.problems import Problem, invalid
from service.schemas import CreateSchedule, ScheduleJob, UpdateSchedule
from service.state import DB, KEYS, PRINCIPAL, REDIS, REGISTRY, SCHEDULER, TOKENS

routes = web.RouteTableDef()

# a PATCH may not set these to null: they always have a value
_NOT_NULL = ("name", "description", "timezone", "job", "overlap", "paused")


def schedule_view(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "cron": row["cron"],
        "interval_s": row["interval_s"],
        "timezone": row["timezone"],
        "job": {
            "type": row["job_type"],
            "params": row["job_params"],
            "priority": row["job_priority"],
            "webhook_url": row["job_webhook_url"],
        },
        "overlap": row["overlap"],
        "paused": row["paused"],
        "next_run_at": iso(row["next_run_at"]),
        "last_run_at": iso(row["last_run_at"]),
        "last_job_id": None if row["last_job_id"] is None else str(row["last_job_id"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


# ---- helpers ---------------------------------------------------------------------------------


def _schedule_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["schedule_id"])
    except ValueError:
        raise _not_found(request.match_info["schedule_id"]) from None


def _not_found(schedule_id: object) -> Problem:
    return Problem(404, f"no schedule {schedule_id}", slug="not-found")


def _name_taken(name: str) -> Problem:
    return Problem(409, f"a schedule named {name!r} exists already", slug="name-taken")


async def _job_columns(request: web.Request, job: ScheduleJob) -> dict[str, Any]:
    """The job's columns: its params validated and normalised as a submission's, its webhook URL
    checked like a submission's."""
    jt, params = job_params(request, job.type, job.params, loc=("body", "job"))
    if job.webhook_url is not None:
        await check_destination(request, job.webhook_url, field=["job", "webhook_url"])
    return {
        "job_type": job.type,
        "job_params": params,
        "job_priority": job.priority.value,
        "job_webhook_url": job.webhook_url,
        "job_max_attempts": jt.max_attempts,
    }


def _timetable(cron: str | None, timezone: str, interval_s: float | None, anchor: datetime) -> Timetable:
    """The timetable, or a 422 naming the field at fault."""
    try:
        zone(timezone)
    except TimetableInvalid as exc:
        raise invalid(["body", "timezone"], str(exc), type_="timezone") from None
    if cron is not None:
        try:
            expand(cron)
        except TimetableInvalid as exc:
            raise invalid(["body", "cron"], str(exc), type_="cron") from None
    return Timetable.of(cron, timezone, interval_s, anchor)


def _first_run(tt: Timetable, now: datetime) -> datetime:
    """The first slot after now: slots before a schedule was written (or resumed) are not owed."""
    first = tt.next_after(now)
    if first is None:
        raise invalid(["body", "cron"], "the cron expression never matches again", type_="cron")
    return first


# ---- routes ----------------------------------------------------------------------------------


@routes.post("/v1/schedules")
async def create_schedule(request: web.Request) -> web.Response:
    body = body_model(await read_json(request), CreateSchedule)
    if (body.cron is None) == (body.interval_s is None):
        raise invalid(["body", "cron"], "give exactly one of cron and interval_s", type_="missing")
    job = await _job_columns(request, body.job)
    now = datetime.now(UTC)
    # interval slots fall on whole seconds from the creation
    anchor = now.replace(microsecond=0)
    tt = _timetable(body.cron, body.timezone, body.interval_s, anchor)
    next_run_at = None if body.paused else _first_run(tt, now)
    row = await schedulestore.create(
        request.app[DB],
        schedulestore.NewSchedule(
            id=new_id(),
            tenant=request[PRINCIPAL].tenant,
            name=body.name,
            description=body.description,
            cron=body.cron,
            interval_s=body.interval_s,
            anchor_at=anchor,
            timezone=body.timezone,
            overlap=body.overlap,
            paused=body.paused,
            next_run_at=next_run_at,
            **job,
        ),
    )
    if row is None:
        raise _name_taken(body.name)
    request.app[SCHEDULER].wake()
    return json_response(schedule_view(row), status=201, headers={"Location": f"/v1/schedules/{row['id']}"})


@routes.get("/v1/schedules")
async def list_schedules(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=50, lo=1, hi=200)
    rows = await schedulestore.list_schedules(
        request.app[DB], request[PRINCIPAL].scope(), limit + 1, query_cursor(request)
    )
    page = rows[:limit]
    return json_response(
        {
            "items": [schedule_view(r) for r in page],
            "next_cursor": jobstore.encode_cursor(page[-1]) if len(rows) > limit else None,
        }
    )


@routes.get("/v1/schedules/{schedule_id}")
async def get_schedule(request: web.Request) -> web.Response:
    schedule_id = _schedule_id(request)
    row = await schedulestore.get(request.app[DB], schedule_id, request[PRINCIPAL].scope())
    if row is None:
        raise _not_found(schedule_id)
    return json_response(schedule_view(row))


def _timetable_changes(body: UpdateSchedule, current: Row, now: datetime) -> dict[str, Any]:
    """The timetable columns a PATCH changes (cron and interval_s replace one another), and the
    next run they and a pause or resume make."""
    given = body.model_fields_set
    if body.cron is not None and body.interval_s is not None:
        raise invalid(["body", "cron"], "give cron or interval_s, not both", type_="conflict")
    changes: dict[str, Any] = {}
    if body.cron is not None:
        changes.update(cron=body.cron, interval_s=None)
    elif body.interval_s is not None:
        # a new interval counts from now, on whole seconds
        changes.update(cron=None, interval_s=body.interval_s, anchor_at=now.replace(microsecond=0))
    elif given & {"cron", "interval_s"}:
        raise invalid(
            ["body", "cron"], "a schedule needs cron or interval_s; set the other instead", type_="missing"
        )
    if body.timezone is not None:
        changes["timezone"] = body.timezone
    timetable_changed = bool(changes)
    cron = changes["cron"] if "cron" in changes else current["cron"]
    interval_s = changes["interval_s"] if "interval_s" in changes else current["interval_s"]
    tt = _timetable(
        cron,
        changes.get("timezone", current["timezone"]),
        interval_s,
        changes.get("anchor_at", current["anchor_at"]),
    )
    paused = current["paused"] if body.paused is None else body.paused
    if paused:
        changes.update(paused=True, next_run_at=None)
    elif timetable_changed or current["paused"]:
        # a changed timetable, or a resume: from the next slot on (those missed while paused are not owed)
        changes.update(paused=False, next_run_at=_first_run(tt, now))
    return changes


@routes.patch("/v1/schedules/{schedule_id}")
async def update_schedule(request: web.Request) -> web.Response:
    schedule_id = _schedule_id(request)
    body = body_model(await read_json(request), UpdateSchedule)
    for field in _NOT_NULL:
        if field in body.model_fields_set and getattr(body, field) is None:
            raise invalid(["body", field], f"{field} cannot be null; leave it out to keep it", type_="null")
    job = await _job_columns(request, body.job) if body.job is not None else {}
    async with request.app[DB].acquire() as conn, conn.transaction():
        current = await schedulestore.get(conn, schedule_id, request[PRINCIPAL].scope(), for_update=True)
        if current is None:
            raise _not_found(schedule_id)
        changes = {
            **_timetable_changes(body, current, datetime.now(UTC)),
            **job,
            **{
                f: getattr(body, f)
                for f in ("name", "description", "overlap")
                if getattr(body, f) is not None
            },
        }
        if not changes:
            return json_response(schedule_view(current))
        try:
            row = await schedulestore.update(conn, schedule_id, changes)
        except asyncpg.UniqueViolationError:
            raise _name_taken(body.name or "") from None
    assert row is not None  # the row is locked by this transaction
    request.app[SCHEDULER].wake()
    return json_response(schedule_view(row))


@routes.delete("/v1/schedules/{schedule_id}")
async def delete_schedule(request: web.Request) -> web.Response:
    schedule_id = _schedule_id(request)
    if not await schedulestore.delete(request.app[DB], schedule_id, request[PRINCIPAL].scope()):
        raise _not_found(schedule_id)
    return web.Response(status=204)


@routes.post("/v1/schedules/{schedule_id}/trigger")
async def trigger_schedule(request: web.Request) -> web.Response:
    """Submit the schedule's job now, outside its timetable (a paused schedule too); it is the
    schedule's last run from then on."""
    schedule_id = _schedule_id(request)
    principal = request[PRINCIPAL]
    async with request.app[DB].acquire() as conn, conn.transaction():
        current = await schedulestore.get(conn, schedule_id, principal.scope(), for_update=True)
        if current is None:
            raise _not_found(schedule_id)
        row = await scheduler.fire(
            conn, current, slot=None, next_run_at=current["next_run_at"], registry=request.app[REGISTRY]
        )
    await scheduler.enqueue_fired(request.app[REDIS], request.app[KEYS], [row])
    token = request.app[TOKENS].issue(str(row["id"]), row["tenant"], principal.key_id)
    return json_response(
        job_view(row, events_token=token), status=202, headers={"Location": f"/v1/jobs/{row['id']}"}
    )
