"""Every SQL statement about jobs and their events.

A change of a job is one statement: it updates the row only if the job is in the state the caller
expects (so a re-run or a stale worker can never move a finished job), bumps `last_seq`, and inserts
the matching `job_events` row with that seq. The row lock taken by the UPDATE makes the per-job
sequence gapless under any concurrency, and the event commits with the change or not at all.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import orjson

from jobwire.batch import Tally
from jobwire.events import EVENT_DATA, WEBHOOK_EVENTS, EventType
from jobwire.retention import BatchRule, Rule

Row = asyncpg.Record
# anything that runs a statement: a pool (autocommit) or a connection (inside a transaction)
Conn: TypeAlias = "asyncpg.Pool[Row] | asyncpg.Connection[Row] | asyncpg.pool.PoolConnectionProxy[Row]"


@dataclass(frozen=True, slots=True)
class NewJob:
    id: UUID
    tenant: str
    type: str
    params: dict[str, Any]
    priority: str
    max_attempts: int
    webhook_url: str | None
    # a delayed job's due time (in the past or None: due now), its expiry, the schedule that made it
    # and the slot of its timetable it was fired for (unique per schedule)
    run_at: datetime | None = None
    expires_at: datetime | None = None
    schedule_id: UUID | None = None
    schedule_slot: datetime | None = None
    # string keys and values (validated by service/schemas.py Labels), filterable with ?label=k:v
    labels: dict[str, str] = field(default_factory=dict)
    # the batch it belongs to, and the jobs that must complete before it starts
    batch_id: UUID | None = None
    depends_on: list[UUID] = field(default_factory=list)


def _outbox(event: EventType, *, when: str = "true", name: str = "w") -> str:
    """The deliveries an event owes, inserted by the same statement as the change (transactional
    outbox): one per registered endpoint of the tenant that asked for this type and, for terminal
    events, one to the job's own webhook_url. `when` limits them to the changed rows it holds for
    (a statement that writes different events for different rows has one outbox per event). Its
    destination (what the dispatcher's concurrency cap counts) is the canonical URL's origin; a
    stored URL without one (written around the api) still gets its delivery, which the dispatcher
    refuses with a clear error: nothing stored in a job may make its transition fail."""
    webhook_event = WEBHOOK_EVENTS.get(event)
    if webhook_event is None:
        return ""
    own_url = ""
    if event.terminal:
        own_url = f"""
    SELECT gen_random_uuid(), j.tenant, j.id, j.last_seq, NULL::uuid, j.webhook_url,
           'url:' || coalesce(substring(j.webhook_url from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+'),
                              'unparsable'),
           '{webhook_event}', to_jsonb(j)
    FROM j WHERE j.webhook_url IS NOT NULL AND ({when})
    UNION ALL"""
    return f""", {name} AS (
    INSERT INTO deliveries (id, tenant, job_id, seq, endpoint_id, url, destination, event_type, job){own_url}
    SELECT gen_random_uuid(), j.tenant, j.id, j.last_seq, ep.id, ep.url, 'endpoint:' || ep.id,
           '{webhook_event}', to_jsonb(j)
    FROM j JOIN webhook_endpoints ep
      ON ep.tenant = j.tenant AND ep.disabled_at IS NULL AND '{webhook_event}' = ANY(ep.events)
    WHERE ({when})
)"""


# what a transition that honours a cancel request does instead of its own change
_CANCEL_INSTEAD = {"status": "'cancelled'", "finished_at": "now()"}

# A job not started by its expires_at ends `cancelled` with this error. Only a job that never
# started (runs = 0) expires: a retry of one that started is not "not started by then".
_EXPIRED = "(runs = 0 AND expires_at IS NOT NULL AND expires_at <= now())"
_EXPIRED_ERROR = (
    "jsonb_build_object('type', 'Expired', 'message', 'the job was not started before it expired at '"
    " || to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
)
# a start cancels instead when a cancel was requested or the job expired (the error says which)
_START_CANCEL_WHEN = f"(cancel_requested OR {_EXPIRED})"
_START_CANCEL_INSTEAD = {
    **_CANCEL_INSTEAD,
    "error": f"CASE WHEN cancel_requested THEN error ELSE {_EXPIRED_ERROR} END",
}


def _or_cancel(
    assignments: dict[str, str],
    when: str = "cancel_requested",
    instead: dict[str, str] = _CANCEL_INSTEAD,
) -> str:
    """SET items that make the change or, when `when` holds (a cancel was requested), end the job
    `cancelled` instead (its other columns left as they are, but for those `instead` sets)."""
    items = []
    for col in dict.fromkeys([*assignments, *instead]):
        cancel, change = instead.get(col, col), assignments.get(col, col)
        items.append(f"{col} = CASE WHEN {when} THEN {cancel} ELSE {change} END")
    return ", ".join(items)


def _transition(
    event: EventType,
    set_sql: str | dict[str, str],
    where_sql: str,
    *,
    batch: str | None = None,
    cancel_when: str = "cancel_requested",
    cancel_instead: dict[str, str] = _CANCEL_INSTEAD,
) -> str:
    """One job's change (its id is $1), or with `batch` (a FROM item yielding `b_id` and the other
    inputs as b_* columns) the same change to many jobs in one statement and one commit.

    `set_sql` given as a dict of assignments makes a transition that honours a cancel request: a
    job whose cancel was requested ends `cancelled` instead (its `cancelled` event and the
    deliveries that one owes written in the same statement, as every other cancel path does). Every
    transition that can leave a job unfinished and not running (a start, a retry, a hand-back) is of
    this kind, so that no path can leave a requested cancel behind."""
    data = EVENT_DATA.get(event, "NULL::jsonb")
    target = "WHERE id = $1" if batch is None else f"FROM {batch} WHERE id = b_id"
    if isinstance(set_sql, str):
        event_type, outbox = f"'{event.value}'", _outbox(event)
    else:
        set_sql = _or_cancel(set_sql, cancel_when, cancel_instead)
        cancelled = "j.status = 'cancelled'"
        event_type = f"CASE WHEN {cancelled} THEN 'cancelled' ELSE '{event.value}' END"
        data = f"CASE WHEN {cancelled} THEN NULL ELSE {data} END"
        outbox = _outbox(event, when=f"NOT {cancelled}") + _outbox(
            EventType.CANCELLED, when=cancelled, name="wc"
        )
    return f"""
WITH j AS (
    UPDATE jobs SET {set_sql}, last_seq = last_seq + 1, updated_at = now()
    {target} AND ({where_sql})
    RETURNING jobs.*
), e AS (
    INSERT INTO job_events (job_id, seq, type, status, progress, message, data, at)
    SELECT id, last_seq, {event_type}, status, progress, message, {data}, updated_at FROM j
){outbox}
SELECT * FROM j"""


def event_written(row: Row, event: EventType) -> EventType:
    """The event a transition that honours cancel requests wrote: its own, or `cancelled`."""
    return EventType.CANCELLED if row["status"] == "cancelled" else event


# Whether any of the jobs `deps` names has not completed (a parent inserted by the same statement is
# not visible to it, so it counts as not completed: a batch's jobs wait for each other). Counted
# rather than "no parent is unfinished" so that an id of no job (purged, or not inserted yet) keeps
# its dependent waiting rather than releasing it.
def _deps_unmet(deps: str) -> str:
    # a CASE, so that a job without dependencies never runs the subqueries
    return (
        f"(CASE WHEN cardinality({deps}) = 0 THEN false"
        f" ELSE (SELECT count(DISTINCT d) FROM unnest({deps}) AS d)"
        f" > (SELECT count(*) FROM jobs p WHERE p.id = ANY({deps}) AND p.status = 'completed') END)"
    )


# A run_at in the future makes the job `scheduled`; one in the past means now (not delayed). A job
# whose dependencies have not all completed is `waiting` (dependencies.py settles it after commit).
_INSERT_JOB = """
WITH j AS (
    INSERT INTO jobs (id, tenant, type, params, priority, max_attempts, webhook_url, last_seq,
                      status, run_at, expires_at, schedule_id, schedule_slot, labels, batch_id,
                      depends_on)
    VALUES ($1, $2, $3, $4, $5, $6, $7, 1,
            CASE WHEN {unmet} THEN 'waiting'
                 WHEN $8::timestamptz > now() THEN 'scheduled' ELSE 'pending' END,
            CASE WHEN $8::timestamptz > now() THEN $8::timestamptz END, $9, $10, $11, $12, $13, $14)
    RETURNING *
), e AS (
    INSERT INTO job_events (job_id, seq, type, status, progress, message, data, at)
    SELECT id, 1, 'created', status, progress, message, NULL, created_at FROM j
)
SELECT * FROM j""".replace("{unmet}", _deps_unmet("$14::uuid[]"))

# A start gives the run the next `runs` number (never reset, unlike `attempts`). Every later write
# of that run carries it ($2, or b_run) and changes nothing once the row holds another: a run that
# was superseded (its lease lapsed and another worker took the job over, or the job was retried
# and started again since) can never touch the job. A pending job whose cancel was requested is
# cancelled by its start rather than left waiting.
_START_SET = {
    "status": "'running'",
    "attempts": "attempts + 1",
    "runs": "runs + 1",
    "started_at": "now()",
    "progress": "0",
    "message": "NULL",
}
# A pending job starts, and so does a scheduled one whose time has come, never before it, whatever
# the queue said (the status guard alone makes the start exclusive). A job past its expiry is
# cancelled instead (error Expired), in the same statement.
_STARTABLE = "(status = 'pending' OR (status = 'scheduled' AND run_at <= now()))"
_START_PENDING = _transition(
    EventType.STARTED,
    _START_SET,
    _STARTABLE,
    cancel_when=_START_CANCEL_WHEN,
    cancel_instead=_START_CANCEL_INSTEAD,
)
# the group-committed forms the worker uses for the jobs it runs concurrently: inputs are arrays
# sorted by job id, so two batches that share rows lock them in the same order
_START_PENDING_MANY = _transition(
    EventType.STARTED,
    _START_SET,
    _STARTABLE,
    batch="unnest($1::uuid[]) AS b(b_id)",
    cancel_when=_START_CANCEL_WHEN,
    cancel_instead=_START_CANCEL_INSTEAD,
)
# the expiry sweep: unstarted jobs past their expiry that no worker started (none running, or
# all busy), a bounded page at a time, skipping rows a start holds
_EXPIRE_DUE = _transition(
    EventType.CANCELLED,
    f"status = 'cancelled', finished_at = now(), error = {_EXPIRED_ERROR}",
    f"status IN ('scheduled', 'pending') AND {_EXPIRED}",
    batch="(SELECT id AS b_id FROM jobs WHERE expires_at <= now() AND status IN ('scheduled', 'pending')"
    " AND runs = 0 ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) AS b",
)
# waiting jobs past their expiry (a separate statement: its own partial index)
_EXPIRE_WAITING = _transition(
    EventType.CANCELLED,
    f"status = 'cancelled', finished_at = now(), error = {_EXPIRED_ERROR}",
    f"status = 'waiting' AND {_EXPIRED}",
    batch="(SELECT id AS b_id FROM jobs WHERE expires_at <= now() AND status = 'waiting'"
    " AND runs = 0 ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) AS b",
)
_COMPLETE_MANY = _transition(
    EventType.COMPLETED,
    "status = 'completed', progress = 100, result = b_result::jsonb, error = NULL, finished_at = now()",
    "status = 'running' AND runs = b_run",
    # results travel as JSON text: asyncpg would read a list inside a jsonb[] as another dimension
    batch="unnest($1::uuid[], $2::bigint[], $3::text[]) AS b(b_id, b_run, b_result)",
)
# progress never goes backwards (GREATEST), even if an older value were written after a newer one
_PROGRESS = _transition(
    EventType.PROGRESS,
    "progress = GREATEST(progress, $3), message = $4",
    "status = 'running' AND runs = $2",
)
_PROGRESS_MANY = _transition(
    EventType.PROGRESS,
    "progress = GREATEST(progress, b_pct), message = b_message",
    "status = 'running' AND runs = b_run",
    batch="unnest($1::uuid[], $2::bigint[], $3::float8[], $4::text[]) AS b(b_id, b_run, b_pct, b_message)",
)
_COMPLETE = _transition(
    EventType.COMPLETED,
    "status = 'completed', progress = 100, result = $3, error = NULL, finished_at = now()",
    "status = 'running' AND runs = $2",
)
_FAIL = _transition(
    EventType.FAILED,
    "status = 'failed', error = $3, finished_at = now()",
    "status = 'running' AND runs = $2",
)
_SCHEDULE_RETRY = _transition(
    EventType.RETRYING, {"status": "'pending'", "error": "$3::jsonb"}, "status = 'running' AND runs = $2"
)
# a graceful worker shutdown hands the job back without spending an attempt on it
_RELEASE = _transition(
    EventType.RETRYING,
    {"status": "'pending'", "error": "$3::jsonb", "attempts": "attempts - 1"},
    "status = 'running' AND runs = $2",
)
_CANCELLED_BY_WORKER = _transition(
    EventType.CANCELLED,
    "status = 'cancelled', finished_at = now()",
    "status = 'running' AND runs = $2",
)
# api side
_CANCEL_PENDING = _transition(
    EventType.CANCELLED,
    "status = 'cancelled', finished_at = now()",
    "status IN ('scheduled', 'waiting', 'pending') AND ($2::text IS NULL OR tenant = $2)",
)
# `runs` is left alone: the next start gives the new run a number no earlier run had
_RETRY_SET = (
    # a job whose dependencies have not all completed (say, one was retried) waits for them again
    f"status = CASE WHEN {_deps_unmet('jobs.depends_on')} THEN 'waiting' ELSE 'pending' END,"
    " attempts = 0, progress = 0, message = NULL, result = NULL, started_at = NULL,"
    " finished_at = NULL, cancel_requested = false"
)
_RETRY = _transition(
    EventType.RETRYING, _RETRY_SET, "status IN ('failed', 'cancelled') AND ($2::text IS NULL OR tenant = $2)"
)
# bulk actions (`bulk_cancel`, `bulk_retry`): the same transitions for a chunk of ids, sorted (rows
# locked in one order, as the worker's batches do), each still guarded by its state and by the
# filter's statuses ($2, NULL: any) at the time it runs
_UNSTARTED = ("scheduled", "waiting", "pending")
_CANCEL_UNSTARTED_MANY = _transition(
    EventType.CANCELLED,
    "status = 'cancelled', finished_at = now()",
    f"status IN {_UNSTARTED} AND ($2::text[] IS NULL OR status = ANY($2::text[]))",
    batch="unnest($1::uuid[]) AS b(b_id)",
)
_RETRY_MANY = _transition(
    EventType.RETRYING,
    _RETRY_SET,
    "status IN ('failed', 'cancelled') AND ($2::text[] IS NULL OR status = ANY($2::text[]))",
    batch="unnest($1::uuid[]) AS b(b_id)",
)


async def insert_job(conn: Conn, job: NewJob) -> Row:
    row = await conn.fetchrow(
        _INSERT_JOB,
        job.id,
        job.tenant,
        job.type,
        job.params,
        job.priority,
        job.max_attempts,
        job.webhook_url,
        job.run_at,
        job.expires_at,
        job.schedule_id,
        job.schedule_slot,
        job.labels,
        job.batch_id,
        job.depends_on,
    )
    assert row is not None  # an INSERT ... RETURNING returns its row
    return row


async def get_job(conn: Conn, job_id: UUID, tenant: str | None) -> Row | None:
    """The job, or None when it does not exist or belongs to another tenant (tenant None: any)."""
    if tenant is None:
        return await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    return await conn.fetchrow("SELECT * FROM jobs WHERE id = $1 AND tenant = $2", job_id, tenant)


async def stream_open(conn: Conn, job_id: UUID, tenant: str, grace_s: float) -> bool:
    """Whether an expired stream token of this job is still good: the job is unfinished (it may run
    for days), or ended less than `grace_s` ago."""
    return bool(
        await conn.fetchval(
            "SELECT finished_at IS NULL OR status NOT IN ('completed', 'failed', 'cancelled')"
            " OR finished_at > now() - make_interval(secs => $3)"
            " FROM jobs WHERE id = $1 AND tenant = $2",
            job_id,
            tenant,
            float(grace_s),
        )
    )


# ---- listing ---------------------------------------------------------------------------------


def encode_cursor(row: Row) -> str:
    raw = orjson.dumps([row["created_at"].isoformat(), str(row["id"])])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Raises ValueError for anything that is not a cursor this API issued."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise ValueError("not a pair of strings")
        created_at = datetime.fromisoformat(value[0])
        if created_at.tzinfo is None:
            raise ValueError("no time zone")
        # in UTC here, where a date at the edge of Python's range fails, not in asyncpg's encoder
        return created_at.astimezone(UTC), UUID(value[1])
    except (ValueError, OverflowError, orjson.JSONDecodeError) as exc:
        raise ValueError("not a cursor returned by this API") from exc


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a list or a bulk action is about. Every field narrows; an empty filter (but for
    the tenant) matches every job of the tenant."""

    # None: every tenant (an admin's list, or an admin's bulk action with an explicit tenant)
    tenant: str | None = None
    statuses: Sequence[str] | None = None
    type: str | None = None
    # all must match (a jsonb containment, served by jobs_labels_idx)
    labels: dict[str, str] = field(default_factory=dict)
    batch_id: UUID | None = None
    schedule_id: UUID | None = None
    created_before: datetime | None = None

    def narrows(self) -> bool:
        """Whether anything but the tenant narrows it (a bulk action needs this or `all`)."""
        return bool(
            self.statuses
            or self.type is not None
            or self.labels
            or self.batch_id is not None
            or self.schedule_id is not None
            or self.created_before is not None
        )


def filter_sql(f: JobFilter, args: list[Any], table: str = "") -> list[str]:
    """The WHERE conditions of `f` on `jobs` (to be ANDed), their values appended to `args` as
    positional parameters: the one translation of a filter, shared by the list and bulk actions.
    `table`: the alias `jobs` goes by in the statement, if any."""
    where: list[str] = []
    t = f"{table}." if table else ""

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.tenant is not None:
        where.append(f"{t}tenant = {arg(f.tenant)}")
    if f.statuses:
        where.append(f"{t}status = ANY({arg(list(f.statuses))}::text[])")
    if f.type is not None:
        where.append(f"{t}type = {arg(f.type)}")
    if f.labels:
        # the `<> '{}'` repeats the partial index's predicate so the planner may use it
        where.append(f"{t}labels @> {arg(f.labels)}::jsonb AND {t}labels <> '{{}}'::jsonb")
    if f.batch_id is not None:
        where.append(f"{t}batch_id = {arg(f.batch_id)}")
    if f.schedule_id is not None:
        where.append(f"{t}schedule_id = {arg(f.schedule_id)}")
    if f.created_before is not None:
        where.append(f"{t}created_at < {arg(f.created_before)}")
    return where


async def list_jobs(
    conn: Conn,
    *,
    tenant: str | None,
    statuses: Sequence[str] | None,
    type_: str | None,
    limit: int,
    after: tuple[datetime, UUID] | None,
    schedule_id: UUID | None = None,
    labels: dict[str, str] | None = None,
    batch_id: UUID | None = None,
) -> list[Row]:
    """Newest first, keyset-paginated on (created_at, id): rows inserted while a client pages never
    shift the pages it has not read yet."""
    return await list_filtered(
        conn,
        JobFilter(
            tenant=tenant,
            statuses=statuses,
            type=type_,
            labels=labels or {},
            batch_id=batch_id,
            schedule_id=schedule_id,
        ),
        limit=limit,
        after=after,
    )


# how many of a label's list entries `rarest_label` counts, at most (an index-only scan each)
LABEL_COUNT_CAP = 1_000


def list_sql(
    f: JobFilter, *, limit: int, after: tuple[datetime, UUID] | None = None, by_label: str | None = None
) -> tuple[str, list[Any]]:
    """The statement of `list_filtered` and its arguments (bench/labels.py EXPLAINs it). With
    `by_label` (one of the filter's labels), the list walks that label's entries in job_labels,
    newest first (job_labels_list_idx, or job_labels_any_tenant_idx for an admin's list across
    tenants), and reads each job by its id: a page costs about a page of rows, however common or
    rare the label (the job must still match the rest of the filter)."""
    args: list[Any] = []
    if by_label is None:
        where = filter_sql(f, args)
        key = "(created_at, id)"
        sql = "SELECT * FROM jobs"
        order = "created_at DESC, id DESC"
    else:
        assert by_label in f.labels
        # the tenant and the walked label are the entry's (copied from its job), and only there: the
        # planner takes each condition for an independent one, and the same one again on the job
        # would make it expect a page to be out of reach and collect and sort every match instead
        rest = {k: v for k, v in f.labels.items() if k != by_label}
        where = filter_sql(replace(f, tenant=None, labels=rest), args, "j")
        args.extend((by_label, f.labels[by_label]))
        where.append(f"l.key = ${len(args) - 1} AND l.value = ${len(args)}")
        if f.tenant is not None:
            args.append(f.tenant)
            where.append(f"l.tenant = ${len(args)}")
        key = "(l.created_at, l.job_id)"
        sql = "SELECT j.* FROM job_labels l JOIN jobs j ON j.id = l.job_id"
        order = "l.created_at DESC, l.job_id DESC"
    if after is not None:
        args.extend(after)
        where.append(f"{key} < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order} LIMIT ${len(args)}"
    return sql, args


async def rarest_label(conn: Conn, tenant: str | None, labels: dict[str, str]) -> str:
    """The key of the label that the fewest of the tenant's jobs (every tenant's: None) carry,
    counted up to LABEL_COUNT_CAP: the one a list by several labels walks, so that it passes over as
    few jobs that lack the others as it can."""
    if len(labels) == 1:
        return next(iter(labels))
    rows = await conn.fetch(
        "SELECT k, (SELECT count(*) FROM (SELECT 1 FROM job_labels WHERE ($1::text IS NULL OR tenant = $1)"
        " AND key = k AND value = v LIMIT $4) s) AS n FROM unnest($2::text[], $3::text[]) AS x(k, v)"
        " ORDER BY n, k LIMIT 1",
        tenant,
        list(labels),
        list(labels.values()),
        LABEL_COUNT_CAP,
    )
    return str(rows[0]["k"])


async def list_statement(
    conn: Conn, f: JobFilter, *, limit: int, after: tuple[datetime, UUID] | None = None
) -> tuple[str, list[Any]]:
    """The statement `list_filtered` runs for `f`, and its arguments: a list by label walks the
    entries of its rarest label."""
    by_label = await rarest_label(conn, f.tenant, f.labels) if f.labels else None
    return list_sql(f, limit=limit, after=after, by_label=by_label)


async def list_filtered(
    conn: Conn, f: JobFilter, *, limit: int, after: tuple[datetime, UUID] | None = None
) -> list[Row]:
    """The jobs `f` matches, newest first, `limit` after the keyset position `after`."""
    sql, args = await list_statement(conn, f, limit=limit, after=after)
    if f.labels:
        return await _fetch_planned_for(conn, sql, args)
    return list(await conn.fetch(sql, *args))


async def _fetch_planned_for(conn: Conn, sql: str, args: Sequence[Any]) -> list[Row]:
    """`conn.fetch`, planned for these very arguments. A label filter's selectivity ranges from
    nothing to most of the table, and the right plan with it (walk an index in the list's order
    until a page matches, or collect the label's matches from the GIN index and sort them) differs
    by orders of magnitude: a prepared statement's generic plan, which PostgreSQL may switch to
    after five executions, fits one end only (measured: 26 ms instead of 0.3 ms at 100,000 jobs)."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            return await _fetch_planned_for(c, sql, args)
    async with conn.transaction():
        # and without parallel workers: starting them costs more than a page (tens of ms on a
        # loaded machine, measured), and a page is what these statements read
        await conn.execute(
            "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL max_parallel_workers_per_gather = 0"
        )
        return list(await conn.fetch(sql, *args))


# ---- transitions, api side -------------------------------------------------------------------


async def cancel_pending(conn: Conn, job_id: UUID, tenant: str | None) -> Row | None:
    return await conn.fetchrow(_CANCEL_PENDING, job_id, tenant)


async def move(conn: Conn, job_id: UUID, tenant: str | None, run_at: datetime) -> Row | None:
    """Move a scheduled job to `run_at` (a time in the past: due now); None unless it is scheduled.
    Not an event (its status does not change); the ETag covers run_at (service/jobs.py)."""
    return await conn.fetchrow(
        "UPDATE jobs SET run_at = GREATEST($3::timestamptz, now()), updated_at = now()"
        " WHERE id = $1 AND status = 'scheduled' AND ($2::text IS NULL OR tenant = $2) RETURNING *",
        job_id,
        tenant,
        run_at,
    )


async def expire_due(conn: Conn, *, limit: int) -> list[Row]:
    """Cancel (error Expired) up to `limit` unstarted jobs past their expiry (and as many waiting
    ones); the rows changed."""
    rows = list(await conn.fetch(_EXPIRE_DUE, limit))
    return rows + list(await conn.fetch(_EXPIRE_WAITING, limit))


async def request_cancel(conn: Conn, job_id: UUID, tenant: str | None) -> Row | None:
    """Flag a running job for cancellation; its worker interrupts it within a second or so."""
    return await conn.fetchrow(
        "UPDATE jobs SET cancel_requested = true WHERE id = $1 AND status = 'running'"
        " AND ($2::text IS NULL OR tenant = $2) RETURNING *",
        job_id,
        tenant,
    )


async def retry(conn: Conn, job_id: UUID, tenant: str | None) -> Row | None:
    return await conn.fetchrow(_RETRY, job_id, tenant)


# ---- bulk actions ------------------------------------------------------------------------------
# POST /v1/jobs/bulk: the ids matching a filter are read once (a snapshot: jobs committed after it
# are never touched), then acted on a chunk at a time, each chunk one short statement, so that a
# large action never holds locks long enough to stall submissions or workers.

# the statuses each action applies to (the rest of what a filter matches is counted, not changed);
# a running job's cancel is a request its worker honours within a second or so
BULK_APPLIES = {"cancel": (*_UNSTARTED, "running"), "retry": ("failed", "cancelled")}


async def bulk_count(conn: Conn, f: JobFilter, action: str) -> tuple[int, int]:
    """(jobs `f` matches, how many of them `action` would change now): a dry run."""
    args: list[Any] = [list(BULK_APPLIES[action])]
    where = filter_sql(f, args)
    [row] = await _fetch_planned_for(
        conn,
        "SELECT count(*) AS matched,"
        " count(*) FILTER (WHERE status = ANY($1::text[]) AND NOT (status = 'running' AND cancel_requested))"
        " AS applies FROM jobs" + (" WHERE " + " AND ".join(where) if where else ""),
        args,
    )
    return int(row["matched"]), int(row["applies"])


async def bulk_snapshot(conn: Conn, f: JobFilter) -> bytes:
    """The ids of the jobs `f` matches now, in id order, as 16 bytes each (a million ids are 16 MB,
    not a million Python objects); `id_chunks` reads them back."""
    args: list[Any] = []
    where = filter_sql(f, args)
    [row] = await _fetch_planned_for(
        conn,
        "SELECT coalesce(string_agg(uuid_send(id), ''::bytea ORDER BY id), ''::bytea) AS ids FROM jobs"
        + (" WHERE " + " AND ".join(where) if where else ""),
        args,
    )
    return bytes(row["ids"])


def id_chunks(snapshot: bytes, size: int) -> Iterator[list[UUID]]:
    """The ids of a `bulk_snapshot`, `size` at a time."""
    step = 16 * size
    for start in range(0, len(snapshot), step):
        end = min(start + step, len(snapshot))
        yield [UUID(bytes=snapshot[i : i + 16]) for i in range(start, end, 16)]


async def bulk_cancel(
    conn: Conn, job_ids: Sequence[UUID], statuses: Sequence[str] | None
) -> tuple[list[Row], int]:
    """Cancel these jobs as POST /v1/jobs/{id}/cancel would: the unstarted ones end `cancelled` (their
    events and owed deliveries in the same statement), the running ones get their cancel requested.
    Returns (the cancelled rows, how many running jobs were flagged)."""
    ids = sorted(job_ids)
    only = list(statuses) if statuses else None
    cancelled = list(await conn.fetch(_CANCEL_UNSTARTED_MANY, ids, only))
    flagged = 0
    if only is None or "running" in only:
        flagged = int(
            await conn.fetchval(
                "WITH f AS (UPDATE jobs SET cancel_requested = true FROM unnest($1::uuid[]) AS b(b_id)"
                " WHERE id = b_id AND status = 'running' AND NOT cancel_requested RETURNING 1)"
                " SELECT count(*) FROM f",
                ids,
            )
        )
    return cancelled, flagged


async def bulk_retry(conn: Conn, job_ids: Sequence[UUID], statuses: Sequence[str] | None) -> list[Row]:
    """Retry these jobs as POST /v1/jobs/{id}/retry would: the failed and cancelled ones, back to
    `pending` (the caller enqueues them)."""
    return list(await conn.fetch(_RETRY_MANY, sorted(job_ids), list(statuses) if statuses else None))


# ---- transitions, worker side ----------------------------------------------------------------
# `run` is always the `runs` number the caller's start returned (see _START_SET).


async def start_pending(conn: Conn, job_id: UUID) -> Row | None:
    """Start a pending job whatever its attempt count (or cancel it, when its cancel was requested:
    see `event_written`); None when it is not pending."""
    return await conn.fetchrow(_START_PENDING, job_id)


async def start_pending_many(conn: Conn, job_ids: Sequence[UUID]) -> dict[UUID, Row]:
    """`start_pending` for many jobs in one statement: the rows of those that changed."""
    rows = await conn.fetch(_START_PENDING_MANY, sorted(job_ids))
    return {r["id"]: r for r in rows}


async def start_within_cap(
    pool: asyncpg.Pool[Row], job_id: UUID, tenant: str, cap: int
) -> tuple[bool, Row | None]:
    """`start_pending` unless the job's tenant already has `cap` running: (False, None) when over
    the cap.

    Starts of one tenant take turns on a transaction-scoped advisory lock, and count the running
    jobs in a statement that begins after the lock is held, so two workers cannot both see room
    for one more."""
    async with pool.acquire() as c, c.transaction():
        await c.execute("SELECT pg_advisory_xact_lock(hashtextextended('jobwire.running:' || $1, 0))", tenant)
        running = await c.fetchval(
            "SELECT count(*) FROM jobs WHERE tenant = $1 AND status = 'running'", tenant
        )
        if running >= cap:
            return False, None
        return True, await c.fetchrow(_START_PENDING, job_id)


async def progress(conn: Conn, job_id: UUID, run: int, pct: float, message: str | None) -> Row | None:
    return await conn.fetchrow(_PROGRESS, job_id, run, pct, message)


Progress = tuple[UUID, int, float, str | None]  # job id, run, percent, message


async def progress_many(conn: Conn, updates: Sequence[Progress]) -> dict[UUID, Row]:
    """`progress` for many (job id, run, percent, message) in one statement, one per job: the rows
    that changed."""
    ordered = sorted(updates, key=lambda u: u[0])
    rows = await conn.fetch(
        _PROGRESS_MANY,
        [u[0] for u in ordered],
        [u[1] for u in ordered],
        [u[2] for u in ordered],
        [u[3] for u in ordered],
    )
    return {r["id"]: r for r in rows}


async def complete(conn: Conn, job_id: UUID, run: int, result: Any) -> Row | None:
    return await conn.fetchrow(_COMPLETE, job_id, run, result)


async def complete_many(conn: Conn, done: Sequence[tuple[UUID, int, Any]]) -> dict[UUID, Row]:
    """`complete` for many (job id, run, result) in one statement: the rows that changed."""
    ordered = sorted(done, key=lambda d: d[0])
    results = [None if d[2] is None else orjson.dumps(d[2]).decode() for d in ordered]
    rows = await conn.fetch(_COMPLETE_MANY, [d[0] for d in ordered], [d[1] for d in ordered], results)
    return {r["id"]: r for r in rows}


async def fail(conn: Conn, job_id: UUID, run: int, error: dict[str, str]) -> Row | None:
    return await conn.fetchrow(_FAIL, job_id, run, error)


async def schedule_retry(conn: Conn, job_id: UUID, run: int, error: dict[str, str]) -> Row | None:
    """Back to pending for another attempt, or `cancelled` when a cancel was requested."""
    return await conn.fetchrow(_SCHEDULE_RETRY, job_id, run, error)


async def release(conn: Conn, job_id: UUID, run: int, error: dict[str, str]) -> Row | None:
    """Handed back unspent at shutdown, or `cancelled` when a cancel was requested."""
    return await conn.fetchrow(_RELEASE, job_id, run, error)


async def cancelled_by_worker(conn: Conn, job_id: UUID, run: int) -> Row | None:
    return await conn.fetchrow(_CANCELLED_BY_WORKER, job_id, run)


async def cancel_requested_among(conn: Conn, job_ids: Sequence[UUID]) -> list[UUID]:
    rows = await conn.fetch(
        "SELECT id FROM jobs WHERE id = ANY($1::uuid[]) AND cancel_requested AND status = 'running'",
        list(job_ids),
    )
    return [r["id"] for r in rows]


# ---- dependencies ------------------------------------------------------------------------------
# A waiting job is settled by the job that ends last among its parents: after that parent's
# transition commits, its waiting children are released (all their parents completed) or cancelled
# (one failed or was cancelled). Each runs in its own statement after the parent's commit, so of
# two parents ending at once the one that commits last sees both ended; the children's row locks
# (taken in id order) and the `status = 'waiting'` guard make a child change once. A child inserted
# while its parent ends settles itself after its own commit (jobwire/dependencies.py), and a sweep
# settles whatever a crash between a commit and its settle left behind.

# the first parent (by id) that failed or was cancelled names the error
_FAILED_PARENT = (
    "(SELECT p.id, p.status FROM jobs p WHERE p.id = ANY(jobs.depends_on)"
    " AND p.status IN ('failed', 'cancelled') ORDER BY p.id LIMIT 1)"
)


def _waiting(among: str, when: str) -> str:
    """The waiting jobs `among` selects for which `when` holds, locked in id order. Only those are
    locked: the children still waiting for a running parent are neither locked nor rewritten (the
    UPDATE checks `when` again once it holds the lock)."""
    return (
        f"(SELECT id AS b_id FROM jobs WHERE status = 'waiting' AND {among} AND {when}"
        " ORDER BY id FOR UPDATE) AS b"
    )


_CHILDREN = "depends_on && $1::uuid[]"  # the waiting children of the jobs in $1
_BY_ID = "id = ANY($1::uuid[])"  # the waiting jobs in $1
_RELEASE_SET = "status = CASE WHEN run_at > now() THEN 'scheduled' ELSE 'pending' END"
_RELEASE_WHEN = f"status = 'waiting' AND NOT {_deps_unmet('jobs.depends_on')}"
_DEPENDENCY_FAILED_SET = (
    "status = 'cancelled', finished_at = now(), error = (SELECT jsonb_build_object("
    "'type', 'DependencyFailed', 'message', 'the job it depends on, ' || f.id || ', '"
    " || CASE f.status WHEN 'failed' THEN 'failed' ELSE 'was cancelled' END) FROM "
    + _FAILED_PARENT
    + " AS f)"
)
_DEPENDENCY_FAILED_WHEN = f"status = 'waiting' AND EXISTS {_FAILED_PARENT}"
_RELEASE_CHILDREN, _RELEASE_BY_ID = (
    _transition(EventType.RELEASED, _RELEASE_SET, _RELEASE_WHEN, batch=_waiting(among, _RELEASE_WHEN))
    for among in (_CHILDREN, _BY_ID)
)
_CANCEL_CHILDREN, _CANCEL_BY_ID = (
    _transition(
        EventType.CANCELLED,
        _DEPENDENCY_FAILED_SET,
        _DEPENDENCY_FAILED_WHEN,
        batch=_waiting(among, _DEPENDENCY_FAILED_WHEN),
    )
    for among in (_CHILDREN, _BY_ID)
)

# at most this many jobs in one job's depends_on (service/schemas.py holds submissions to it)
MAX_DEPENDENCIES = 100


# Most jobs have no dependents: a probe of the index (a small plan, ~0.1 ms) spares them the
# transition statement (~1 ms, most of it planning).
_HAS_WAITING_CHILDREN = (
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'waiting' AND depends_on && $1::uuid[])"
)


async def release_children(conn: Conn, parents: Sequence[UUID]) -> list[Row]:
    """Release the waiting children of these (completed) jobs whose parents have all completed:
    `pending`, or `scheduled` when their run_at is still ahead; the rows changed."""
    if not parents or not await conn.fetchval(_HAS_WAITING_CHILDREN, list(parents)):
        return []
    return list(await conn.fetch(_RELEASE_CHILDREN, list(parents)))


async def cancel_children(conn: Conn, parents: Sequence[UUID]) -> list[Row]:
    """Cancel (DependencyFailed) the waiting children of these (failed or cancelled) jobs; the rows
    changed, whose own children are the next to cancel."""
    if not parents or not await conn.fetchval(_HAS_WAITING_CHILDREN, list(parents)):
        return []
    return list(await conn.fetch(_CANCEL_CHILDREN, list(parents)))


async def settle_waiting(conn: Conn, job_ids: Sequence[UUID]) -> tuple[list[Row], list[Row]]:
    """Release or cancel these waiting jobs as their parents' statuses say (released, cancelled);
    a job whose parents are still running stays waiting."""
    cancelled = list(await conn.fetch(_CANCEL_BY_ID, list(job_ids)))
    released = list(await conn.fetch(_RELEASE_BY_ID, list(job_ids)))
    return released, cancelled


async def waiting_page(
    conn: Conn, *, after: UUID | None, older_than_s: float, limit: int
) -> list[tuple[UUID, bool]]:
    """Waiting jobs not touched for `older_than_s`, in id order from `after` (the sweep's scan),
    each with whether its parents have ended so that it can be settled (read without locks: a job
    still waiting for a running parent is left alone, not locked and rewritten every sweep)."""
    rows = await conn.fetch(
        "SELECT id, (NOT " + _deps_unmet("jobs.depends_on") + " OR EXISTS " + _FAILED_PARENT + ") AS ready"
        " FROM jobs WHERE status = 'waiting' AND ($1::uuid IS NULL OR id > $1)"
        " AND updated_at < now() - make_interval(secs => $2) ORDER BY id LIMIT $3",
        after,
        older_than_s,
        limit,
    )
    return [(r["id"], r["ready"]) for r in rows]


async def missing_dependencies(conn: Conn, tenant: str, job_ids: Sequence[UUID]) -> set[UUID]:
    """The ids among `job_ids` that name no job of `tenant`."""
    rows = await conn.fetch(
        "SELECT id FROM jobs WHERE id = ANY($1::uuid[]) AND tenant = $2", list(job_ids), tenant
    )
    return set(job_ids) - {r["id"] for r in rows}


async def dependency_results(conn: Conn, job_ids: Sequence[UUID]) -> dict[UUID, Any]:
    """The result of each of these jobs (what a job that depends on them reads)."""
    rows = await conn.fetch("SELECT id, result FROM jobs WHERE id = ANY($1::uuid[])", list(job_ids))
    return {r["id"]: r["result"] for r in rows}


# ---- reconciliation --------------------------------------------------------------------------


async def unfinished_page(conn: Conn, *, after: UUID | None, older_than_s: float, limit: int) -> list[Row]:
    """Unfinished jobs not touched for `older_than_s`, in id order from `after` (a rotating scan)."""
    return list(
        await conn.fetch(
            "SELECT id, priority, created_at, status, run_at FROM jobs"
            " WHERE status IN ('scheduled', 'pending', 'running') AND ($1::uuid IS NULL OR id > $1)"
            " AND updated_at < now() - make_interval(secs => $2) ORDER BY id LIMIT $3",
            after,
            older_than_s,
            limit,
        )
    )


async def unfinished_among(conn: Conn, job_ids: Sequence[UUID]) -> list[UUID]:
    rows = await conn.fetch(
        "SELECT id FROM jobs WHERE id = ANY($1::uuid[]) AND status IN ('scheduled', 'pending', 'running')",
        list(job_ids),
    )
    return [r["id"] for r in rows]


# ---- events ----------------------------------------------------------------------------------


def run_duration_s(row: Row) -> float | None:
    """How long a finished job's last run took (None when it never started)."""
    if row["started_at"] and row["finished_at"]:
        return float((row["finished_at"] - row["started_at"]).total_seconds())
    return None


# events read from job_events in one query at most: a long history is replayed in pages
EVENT_PAGE = 500


async def events_after_many(
    conn: Conn, cursors: dict[UUID, int], tenant: str | None, *, limit: int = EVENT_PAGE
) -> list[Row]:
    """The first `limit` events of several jobs of `tenant` (None: of any tenant), each after its
    own seq, in commit-time order. Each job reads at most `limit` rows by its primary key, so one
    page costs at most len(cursors) * limit rows however long the histories; page on with
    `event_pages`."""
    if not cursors:
        return []
    return list(
        await conn.fetch(
            "SELECT e.* FROM unnest($1::uuid[], $2::int[]) AS c(job_id, after)"
            " JOIN jobs j ON j.id = c.job_id AND ($3::text IS NULL OR j.tenant = $3)"
            " CROSS JOIN LATERAL (SELECT * FROM job_events x WHERE x.job_id = c.job_id"
            "   AND x.seq > c.after ORDER BY x.seq LIMIT $4) e"
            " ORDER BY e.at, e.job_id, e.seq LIMIT $4",
            list(cursors),
            list(cursors.values()),
            tenant,
            limit,
        )
    )


async def event_pages(
    conn: Conn, cursors: dict[UUID, int], tenant: str | None, *, page: int = EVENT_PAGE
) -> AsyncIterator[list[Row]]:
    """Every event of several jobs of `tenant` after their cursors, one page (one query) at a time."""
    cursors = dict(cursors)
    while cursors:
        rows = await events_after_many(conn, cursors, tenant, limit=page)
        if rows:
            yield rows
        if len(rows) < page:
            return
        for row in rows:
            cursors[row["job_id"]] = max(cursors[row["job_id"]], row["seq"])


async def last_seqs(conn: Conn, job_ids: Sequence[UUID]) -> dict[UUID, int]:
    """The newest event's seq of each of these jobs (the hub's audit of what it was sent)."""
    rows = await conn.fetch("SELECT id, last_seq FROM jobs WHERE id = ANY($1::uuid[])", list(job_ids))
    return {r["id"]: r["last_seq"] for r in rows}


async def get_jobs(conn: Conn, job_ids: Sequence[UUID], tenant: str | None) -> list[Row]:
    return list(
        await conn.fetch(
            "SELECT * FROM jobs WHERE id = ANY($1::uuid[]) AND ($2::text IS NULL OR tenant = $2)",
            list(job_ids),
            tenant,
        )
    )


_INSERT_JOBS = """
WITH j AS (
    INSERT INTO jobs (id, tenant, type, params, priority, max_attempts, webhook_url, last_seq,
                      status, run_at, expires_at, schedule_id, schedule_slot, labels, batch_id,
                      depends_on)
    SELECT id, tenant, type, params, priority, max_attempts, webhook_url, 1,
           CASE WHEN {unmet} THEN 'waiting' WHEN run_at > now() THEN 'scheduled' ELSE 'pending' END,
           CASE WHEN run_at > now() THEN run_at END, expires_at, schedule_id, schedule_slot, labels,
           batch_id, deps
    FROM (SELECT *, ARRAY(SELECT jsonb_array_elements_text(depends_on::jsonb)::uuid) AS deps
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::int[], $7::text[],
                $8::timestamptz[], $9::timestamptz[], $10::uuid[], $11::timestamptz[], $12::jsonb[],
                $13::uuid[], $14::text[])
         AS t(id, tenant, type, params, priority, max_attempts, webhook_url, run_at, expires_at,
              schedule_id, schedule_slot, labels, batch_id, depends_on)) AS t
    RETURNING *
), e AS (
    INSERT INTO job_events (job_id, seq, type, status, progress, message, data, at)
    SELECT id, 1, 'created', status, progress, message, NULL, created_at FROM j
)
SELECT * FROM j""".replace("{unmet}", _deps_unmet("deps"))


async def insert_jobs(conn: Conn, jobs: Sequence[NewJob]) -> dict[UUID, Row]:
    """Insert many jobs (and their `created` events) in one statement: one commit for all."""
    rows = await conn.fetch(
        _INSERT_JOBS,
        [j.id for j in jobs],
        [j.tenant for j in jobs],
        [j.type for j in jobs],
        [j.params for j in jobs],
        [j.priority for j in jobs],
        [j.max_attempts for j in jobs],
        [j.webhook_url for j in jobs],
        [j.run_at for j in jobs],
        [j.expires_at for j in jobs],
        [j.schedule_id for j in jobs],
        [j.schedule_slot for j in jobs],
        [j.labels for j in jobs],
        [j.batch_id for j in jobs],
        # each job's list of ids travels as JSON text: asyncpg would take a list of lists for a
        # two-dimensional array, which needs equal lengths
        [orjson.dumps([str(d) for d in j.depends_on]).decode() for j in jobs],
    )
    return {r["id"]: r for r in rows}


# ---- batches ----------------------------------------------------------------------------------
# A batch's jobs are jobs like any other; these read and change them by their batch_id. The
# `batches` table itself is jobwire/batchstore.py's.

# a batch's jobs by status: how many, their progress (what each reached) and the sum of
# their last_seq, which grows with every event of any of them
_BATCH_TALLIES = """
SELECT batch_id, status, count(*)::int AS n,
       sum(progress) AS p,
       sum(last_seq)::bigint AS v
FROM jobs WHERE batch_id = ANY($1::uuid[]) GROUP BY batch_id, status"""


async def batch_tallies(conn: Conn, batch_ids: Sequence[UUID]) -> dict[UUID, Tally]:
    """The tally of each batch's jobs as they are now (a batch without jobs is left out)."""
    tallies: dict[UUID, Tally] = {}
    for r in await conn.fetch(_BATCH_TALLIES, list(batch_ids)):
        tallies.setdefault(r["batch_id"], Tally()).add(r["status"], r["n"], float(r["p"]), int(r["v"]))
    return tallies


# cancel every job of the batch that has not started (a running one is flagged: see
# `flag_batch_running`), rows locked in id order like every group-committed transition
_CANCEL_BATCH_UNSTARTED = _transition(
    EventType.CANCELLED,
    "status = 'cancelled', finished_at = now()",
    "status IN ('scheduled', 'pending', 'waiting')",
    batch="(SELECT id AS b_id FROM jobs WHERE batch_id = $1"
    " AND status IN ('scheduled', 'pending', 'waiting') ORDER BY id FOR UPDATE) AS b",
)


async def cancel_batch_jobs(conn: Conn, batch_id: UUID) -> tuple[list[Row], list[Row]]:
    """Cancel the batch's unfinished jobs as a job cancel does: the unstarted ones now (their
    `cancelled` events and deliveries in the same statement), the running ones by their cancel flag
    (their workers interrupt them). Returns (cancelled rows, flagged rows). The flag is set by a
    second statement, so a job that a worker started while the first waited for its lock is
    flagged."""
    cancelled = list(await conn.fetch(_CANCEL_BATCH_UNSTARTED, batch_id))
    flagged = list(
        await conn.fetch(
            "UPDATE jobs SET cancel_requested = true WHERE batch_id = $1 AND status = 'running'"
            " AND NOT cancel_requested RETURNING *",
            batch_id,
        )
    )
    return cancelled, flagged


# ---- idempotency keys ------------------------------------------------------------------------------

# A repeat of a key replays its job for this long (API.md); older keys are reused, then deleted.
IDEMPOTENCY_TTL_S = 24 * 3600


async def claim_idempotency_key(
    conn: Conn, tenant: str, key: str, request_hash: bytes, job_id: UUID, status_code: int | None
) -> bool:
    """Record `key` for a new job, in the job's transaction; False when the key is taken (a
    concurrent holder blocks this until it commits). A key past its TTL is taken over."""
    claimed = await conn.fetchval(
        """
        INSERT INTO idempotency_keys (tenant, key, request_hash, job_id, status_code)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (tenant, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id,
                status_code = EXCLUDED.status_code, created_at = now()
            WHERE idempotency_keys.created_at < now() - make_interval(secs => $6)
        RETURNING true""",
        tenant,
        key,
        request_hash,
        job_id,
        status_code,
        IDEMPOTENCY_TTL_S,
    )
    return bool(claimed)


async def get_idempotency_key(conn: Conn, tenant: str, key: str) -> Row | None:
    """The first use of a key: its request hash, job, answer status (None while unknown) and age."""
    return await conn.fetchrow(
        "SELECT request_hash, job_id, status_code, now() - created_at AS age"
        " FROM idempotency_keys WHERE tenant = $1 AND key = $2",
        tenant,
        key,
    )


async def set_idempotent_status(conn: Conn, tenant: str, key: str, status_code: int) -> None:
    """The status the first request was answered with, once known (after a `Prefer: wait`)."""
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = $3 WHERE tenant = $1 AND key = $2",
        tenant,
        key,
        status_code,
    )


async def expire_idempotency_keys(conn: Conn, *, limit: int) -> int:
    """Delete up to `limit` keys past their TTL, oldest first (by the created_at index), skipping any
    a concurrent request holds; returns how many went. The retention purge calls it in batches."""
    deleted = await conn.fetchval(
        """
        WITH expired AS (
            SELECT tenant, key FROM idempotency_keys
            WHERE created_at < now() - make_interval(secs => $1)
            ORDER BY created_at LIMIT $2
            FOR UPDATE SKIP LOCKED
        ), gone AS (
            DELETE FROM idempotency_keys k USING expired x
            WHERE k.tenant = x.tenant AND k.key = x.key RETURNING 1
        )
        SELECT count(*) FROM gone""",
        IDEMPOTENCY_TTL_S,
        limit,
    )
    return int(deleted)


# ---- statistics ------------------------------------------------------------------------------------


async def queue_counts(conn: Conn, tenant: str | None) -> Row:
    """Pending jobs per priority, running jobs, and jobs completed and failed in the last minute, of
    one tenant or of all (None)."""
    row = await conn.fetchrow(
        """
        SELECT
          count(*) FILTER (WHERE status = 'pending' AND priority = 'normal') AS normal,
          count(*) FILTER (WHERE status = 'pending' AND priority = 'high')   AS high,
          count(*) FILTER (WHERE status = 'running')                         AS running,
          (SELECT count(*) FROM jobs WHERE status = 'completed'
             AND finished_at > now() - interval '1 minute' AND ($1::text IS NULL OR tenant = $1))
            AS completed,
          (SELECT count(*) FROM jobs WHERE status = 'failed'
             AND finished_at > now() - interval '1 minute' AND ($1::text IS NULL OR tenant = $1))
            AS failed
        FROM jobs WHERE status IN ('pending', 'running') AND ($1::text IS NULL OR tenant = $1)""",
        tenant,
    )
    assert row is not None  # an aggregate always answers one row
    return row


# ---- retention -------------------------------------------------------------------------------------
# The policy (how long each kind of finished job is kept) is jobwire/retention.py; the loop that
# runs these is workers/purger.py.

# Every (status, type) among finished jobs, read as a loose index scan of jobs_purge_idx: one index
# probe per distinct pair, not a scan of the table.
_FINISHED_KINDS = """
WITH RECURSIVE kinds(status, type) AS (
    SELECT s, (SELECT type FROM jobs WHERE status = s AND finished_at IS NOT NULL ORDER BY type LIMIT 1)
    FROM unnest($1::text[]) AS s
  UNION ALL
    SELECT k.status, (SELECT type FROM jobs WHERE status = k.status AND type > k.type
                      AND finished_at IS NOT NULL ORDER BY type LIMIT 1)
    FROM kinds k WHERE k.type IS NOT NULL
)
SELECT status, type FROM kinds WHERE type IS NOT NULL"""


async def finished_kinds(conn: Conn, statuses: Sequence[str]) -> list[tuple[str, str]]:
    rows = await conn.fetch(_FINISHED_KINDS, list(statuses))
    return [(r["status"], r["type"]) for r in rows]


# The finished jobs past their rule's retention ($1-$3: one rule per (status, type), as arrays),
# oldest first per rule through jobs_purge_idx. A job that still owes a webhook delivery
# (`pending`) is kept until the delivery ends. The cutoff is the database's now(), so the clocks of
# the hosts running the purge do not matter.
_DUE = """
SELECT v.id FROM unnest($1::text[], $2::text[], $3::float8[]) AS r(status, type, keep_s)
CROSS JOIN LATERAL (
    SELECT j.id FROM jobs j
    WHERE j.status = r.status AND j.type = r.type AND j.finished_at IS NOT NULL
      AND j.finished_at < now() - make_interval(secs => r.keep_s)
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = j.id AND d.status = 'pending')
    ORDER BY j.finished_at {limit}
    {lock}
) v
{limit}"""

# One bounded batch, one statement, one short transaction. Victims are row-locked with SKIP
# LOCKED, so concurrent purges (or a retry of the same job) never wait on each other and never
# delete a row twice, and the lock re-checks the job's status: a job retried since the snapshot
# is left alone. The job's rows are deleted explicitly (so they can be counted); the foreign keys'
# ON DELETE CASCADE still takes whatever else references a job.
_PURGE_BATCH = f"""
WITH victims AS ({_DUE.format(limit="LIMIT $4", lock="FOR UPDATE OF j SKIP LOCKED")}
), ids AS (
    -- as an array, every delete below is an index lookup per id: a join here may be planned as a
    -- hash over a scan of the whole table, a cost that would grow with it
    SELECT ARRAY(SELECT id FROM victims) AS jobs
), attempts AS (
    DELETE FROM delivery_attempts WHERE delivery_id = ANY(ARRAY(
        SELECT d.id FROM deliveries d WHERE d.job_id = ANY((SELECT jobs FROM ids)::uuid[]))) RETURNING 1
), dels AS (
    DELETE FROM deliveries WHERE job_id = ANY((SELECT jobs FROM ids)::uuid[]) RETURNING 1
), events AS (
    DELETE FROM job_events WHERE job_id = ANY((SELECT jobs FROM ids)::uuid[]) RETURNING 1
), idem AS (
    DELETE FROM idempotency_keys WHERE job_id = ANY((SELECT jobs FROM ids)::uuid[]) RETURNING 1
), gone AS (
    DELETE FROM jobs WHERE id = ANY((SELECT jobs FROM ids)::uuid[]) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT count(*) FROM events) AS job_events,
       (SELECT count(*) FROM dels) AS deliveries, (SELECT count(*) FROM attempts) AS delivery_attempts,
       (SELECT count(*) FROM idem) AS idempotency_keys"""

# Settled batches past their retention with no job left, oldest first per status through
# batches_purge_idx (`rules`: the parameters of two arrays, one rule per status). Their jobs go
# first, each by its own rule, so a batch is due once the last of them has been purged (a probe of
# jobs_batch_idx). A batch past its retention whose jobs are still kept (a failed job kept longer)
# is passed over on every pass until they go: a probe each, and there are only as many as there are
# batches settled within the longest job retention beyond the batch's own. A batch that still owes
# its webhook (`pending`) is kept until the delivery ends, as a job is. An unsettled batch (running,
# or cancelled with jobs still ending) has no settled_at and is never due. Both checks are scalar
# subqueries, not NOT EXISTS: those are never made joins, so each stays one index probe per batch
# (as an anti join the planner hashed a scan of the whole jobs table; measured with 20,000 batches
# past their retention and 300,000 jobs: 95 ms a round, 165 ms so). The plan reads the index range
# past the cutoff and sorts it, so a round costs a probe per batch past its retention still there:
# in steady state the due ones and those their jobs hold; a first pass over a long backlog reads
# that backlog on every round.
_BATCHES_DUE = """
SELECT v.id FROM unnest({rules}) AS r(status, keep_s)
CROSS JOIN LATERAL (
    SELECT b.id FROM batches b
    WHERE b.status = r.status AND b.settled_at IS NOT NULL
      AND b.settled_at < now() - make_interval(secs => r.keep_s)
      AND (SELECT 1 FROM deliveries d WHERE d.batch_id = b.id AND d.status = 'pending' LIMIT 1) IS NULL
      {jobs_left}
    ORDER BY b.settled_at {limit}
    {lock}
) v
{limit}"""

# One bounded batch of batches, as _PURGE_BATCH is for jobs: row-locked with SKIP LOCKED (two
# purges never wait on each other or delete a batch twice; the settle loop only locks unsettled
# batches), then the batch's webhook deliveries and their attempts, its idempotency key (keyed by
# the batch's id, as a job's by the job's: a repeated POST /v1/batches with it makes a new batch),
# and any notes of it the settle loop has not taken yet. batch_checks has no index on batch_id: it
# is a queue the settle loop drains every JOBWIRE_BATCH_SETTLE_S, so its scan reads a handful of
# rows, and an index would cost every terminal transition of a batch job; a note the settle loop
# holds is skipped (it is deleting it).
_BATCHES_VICTIMS = _BATCHES_DUE.format(
    rules="$1::text[], $2::float8[]",
    jobs_left="AND (SELECT 1 FROM jobs j WHERE j.batch_id = b.id LIMIT 1) IS NULL",
    limit="LIMIT $3",
    lock="FOR UPDATE OF b SKIP LOCKED",
)
_PURGE_BATCHES = f"""
WITH victims AS ({_BATCHES_VICTIMS}
), ids AS (
    SELECT ARRAY(SELECT id FROM victims) AS batches
), attempts AS (
    DELETE FROM delivery_attempts WHERE delivery_id = ANY(ARRAY(
        SELECT d.id FROM deliveries d WHERE d.batch_id = ANY((SELECT batches FROM ids)::uuid[]))) RETURNING 1
), dels AS (
    DELETE FROM deliveries WHERE batch_id = ANY((SELECT batches FROM ids)::uuid[]) RETURNING 1
), idem AS (
    DELETE FROM idempotency_keys WHERE job_id = ANY((SELECT batches FROM ids)::uuid[]) RETURNING 1
), checks AS (
    DELETE FROM batch_checks WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM batch_checks WHERE batch_id = ANY((SELECT batches FROM ids)::uuid[])
        FOR UPDATE SKIP LOCKED)) RETURNING 1
), gone AS (
    DELETE FROM batches WHERE id = ANY((SELECT batches FROM ids)::uuid[]) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS batches, (SELECT count(*) FROM checks) AS batch_checks,
       (SELECT count(*) FROM dels) AS deliveries, (SELECT count(*) FROM attempts) AS delivery_attempts,
       (SELECT count(*) FROM idem) AS idempotency_keys"""

# what a whole pass (_PURGE_BATCH to the end, then _PURGE_BATCHES to the end) would delete,
# changing nothing (`jobwire purge --dry-run`). A batch counts when every job it still has is one
# the pass would purge first; its candidates' jobs are matched against the due jobs by one join.
_BATCH_CANDIDATES = _BATCHES_DUE.format(rules="$4::text[], $5::float8[]", jobs_left="", limit="", lock="")
_PURGE_PREVIEW = f"""
WITH victims AS MATERIALIZED ({_DUE.format(limit="", lock="")}
), batch_candidates AS MATERIALIZED ({_BATCH_CANDIDATES}
), batch_victims AS MATERIALIZED (
    SELECT id FROM batch_candidates
    EXCEPT
    SELECT j.batch_id FROM batch_candidates c JOIN jobs j ON j.batch_id = c.id
    WHERE NOT EXISTS (SELECT 1 FROM victims v WHERE v.id = j.id)
), dels AS MATERIALIZED (
    SELECT d.id FROM deliveries d JOIN victims v ON d.job_id = v.id
    UNION ALL
    SELECT d.id FROM deliveries d JOIN batch_victims b ON d.batch_id = b.id
)
SELECT (SELECT count(*) FROM victims) AS jobs,
       (SELECT count(*) FROM job_events e JOIN victims v ON e.job_id = v.id) AS job_events,
       (SELECT count(*) FROM dels) AS deliveries,
       (SELECT count(*) FROM delivery_attempts a JOIN dels d ON a.delivery_id = d.id) AS delivery_attempts,
       (SELECT count(*) FROM idempotency_keys k
          WHERE k.job_id IN (SELECT id FROM victims UNION ALL SELECT id FROM batch_victims))
         AS idempotency_keys,
       (SELECT count(*) FROM batch_victims) AS batches,
       (SELECT count(*) FROM batch_checks c JOIN batch_victims b ON c.batch_id = b.id) AS batch_checks"""


def _rule_arrays(rules: Sequence[Rule]) -> tuple[list[str], list[str], list[float]]:
    return [r.status for r in rules], [r.type for r in rules], [r.keep_s for r in rules]


def _batch_rule_arrays(rules: Sequence[BatchRule]) -> tuple[list[str], list[float]]:
    return [r.status for r in rules], [r.keep_s for r in rules]


async def purge_batch(conn: Conn, rules: Sequence[Rule], *, limit: int) -> dict[str, int]:
    """Delete up to `limit` finished jobs past their rule's retention, with their events,
    deliveries, attempts and idempotency keys: the rows deleted, by table."""
    if not rules:
        return {}
    row = await conn.fetchrow(_PURGE_BATCH, *_rule_arrays(rules), limit)
    assert row is not None  # aggregates always answer one row
    return {name: int(n) for name, n in row.items()}


async def purge_settled_batches(conn: Conn, rules: Sequence[BatchRule], *, limit: int) -> dict[str, int]:
    """Delete up to `limit` settled batches past their rule's retention that have no job left,
    with their webhook deliveries, attempts, idempotency keys and untaken settle notes: the rows
    deleted, by table. Run after the jobs' purge, which is what leaves batches without jobs."""
    if not rules:
        return {}
    row = await conn.fetchrow(_PURGE_BATCHES, *_batch_rule_arrays(rules), limit)
    assert row is not None  # aggregates always answer one row
    return {name: int(n) for name, n in row.items()}


async def purge_preview(
    conn: Conn, rules: Sequence[Rule], batch_rules: Sequence[BatchRule]
) -> dict[str, int]:
    """The rows a purge by `rules` and `batch_rules` would delete now, by table; deletes nothing."""
    row = await conn.fetchrow(_PURGE_PREVIEW, *_rule_arrays(rules), *_batch_rule_arrays(batch_rules))
    assert row is not None
    return {name: int(n) for name, n in row.items()}


async def expired_idempotency_keys(conn: Conn) -> int:
    """How many idempotency keys are past their TTL (what the purge would expire)."""
    n = await conn.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        IDEMPOTENCY_TTL_S,
    )
    return int(n)


# One purge runs at a time across the deployment: a session-level advisory lock, held on the purge's
# own connection for the whole pass (batches commit one by one inside it).
_PURGE_LOCK = 0x6A6F62707572  # "jobpur"


async def try_purge_lock(conn: asyncpg.Connection[Row]) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _PURGE_LOCK))


async def purge_lock(conn: asyncpg.Connection[Row]) -> None:
    """Wait for the purge lock (a command asked for a pass: it runs after the one under way)."""
    await conn.execute("SELECT pg_advisory_lock($1)", _PURGE_LOCK)


async def vacuum(conn: asyncpg.Connection[Row], tables: Sequence[str]) -> None:
    """VACUUM (not FULL) the tables a purge deleted from, so the space of the rows it deleted is
    reusable at once rather than when autovacuum's thresholds are next crossed. It never blocks
    reads or writes; SKIP_LOCKED leaves out a table another vacuum is busy with. TRUNCATE false:
    handing the empty pages at the end of a table back to the system takes an ACCESS EXCLUSIVE
    lock that stalls every reader and writer of the table (measured: a submission waited 125 ms),
    and a table at a steady size would only grow them back. Outside any transaction (VACUUM cannot
    run in one): `conn` is the purge's own connection."""
    if tables:
        names = ", ".join('"' + t.replace('"', '""') + '"' for t in tables)
        await conn.execute(f"VACUUM (SKIP_LOCKED, TRUNCATE false) {names}")


async def table_sizes(conn: Conn) -> list[Row]:
    """Every table of jobwire's schema with its size on disk (indexes and TOAST included), and the
    whole database's (table NULL): the /metrics gauges an operator alerts on."""
    return list(
        await conn.fetch(
            "SELECT c.relname AS table, pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
            " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')"
            " UNION ALL SELECT NULL, pg_database_size(current_database()) ORDER BY 1"
        )
    )
