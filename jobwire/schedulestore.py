"""Every SQL statement about schedules (table `schedules`).

The jobs a schedule fires are inserted by `jobwire.jobstore`, in the transaction of the scheduler
that holds the schedule's row (`claim_due`, FOR UPDATE SKIP LOCKED) and advances its next_run_at:
the job and the advance commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from jobwire import db
from jobwire.jobstore import Conn, Row

# the columns a change (PATCH, pause, resume) may write
WRITABLE = frozenset(
    {
        "name",
        "description",
        "cron",
        "interval_s",
        "anchor_at",
        "timezone",
        "job_type",
        "job_params",
        "job_priority",
        "job_webhook_url",
        "job_max_attempts",
        "overlap",
        "paused",
        "next_run_at",
    }
)


@dataclass(frozen=True, slots=True)
class NewSchedule:
    id: UUID
    tenant: str
    name: str
    description: str
    cron: str | None
    interval_s: float | None
    anchor_at: datetime
    timezone: str
    job_type: str
    job_params: dict[str, Any]
    job_priority: str
    job_webhook_url: str | None
    job_max_attempts: int
    overlap: str
    paused: bool
    next_run_at: datetime | None


async def create(conn: Conn, s: NewSchedule) -> Row | None:
    """The new schedule, or None when its tenant has one of that name already."""
    return await conn.fetchrow(
        """
        INSERT INTO schedules (id, tenant, name, description, cron, interval_s, anchor_at, timezone,
                               job_type, job_params, job_priority, job_webhook_url, job_max_attempts,
                               overlap, paused, next_run_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        ON CONFLICT (tenant, name) DO NOTHING
        RETURNING *""",
        s.id,
        s.tenant,
        s.name,
        s.description,
        s.cron,
        s.interval_s,
        s.anchor_at,
        s.timezone,
        s.job_type,
        s.job_params,
        s.job_priority,
        s.job_webhook_url,
        s.job_max_attempts,
        s.overlap,
        s.paused,
        s.next_run_at,
    )


async def get(conn: Conn, schedule_id: UUID, tenant: str | None, *, for_update: bool = False) -> Row | None:
    """The schedule, or None when it does not exist or belongs to another tenant (tenant None: any).
    `for_update` locks it until the caller's transaction ends (a change, a trigger)."""
    return await conn.fetchrow(
        "SELECT * FROM schedules WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"
        + (" FOR UPDATE" if for_update else ""),
        schedule_id,
        tenant,
    )


async def list_schedules(
    conn: Conn, tenant: str | None, limit: int, after: tuple[datetime, UUID] | None
) -> list[Row]:
    return await db.newest_first(conn, "schedules", tenant, limit, after)


async def update(conn: Conn, schedule_id: UUID, changes: dict[str, Any]) -> Row | None:
    """Write `changes` (columns of WRITABLE); raises asyncpg.UniqueViolationError on a name taken."""
    unknown = set(changes) - WRITABLE
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
    columns = list(changes)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(columns, start=2))
    return await conn.fetchrow(
        f"UPDATE schedules SET {sets}, updated_at = now() WHERE id = $1 RETURNING *",
        schedule_id,
        *changes.values(),
    )


async def delete(conn: Conn, schedule_id: UUID, tenant: str | None) -> bool:
    """Its jobs stay, with their schedule_id (GET /v1/jobs?schedule_id= still lists them)."""
    row = await conn.fetchrow(
        "DELETE FROM schedules WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) RETURNING id",
        schedule_id,
        tenant,
    )
    return row is not None


# ---- the scheduler ----------------------------------------------------------------------------


async def claim_due(conn: Conn, limit: int) -> list[Row]:
    """Up to `limit` due schedules, soonest first, locked until the caller's transaction ends; rows
    another scheduler holds are skipped, not waited for. Each row carries the database's `db_now`,
    the clock every scheduler reads, so that processes on hosts whose clocks disagree agree."""
    return list(
        await conn.fetch(
            "SELECT *, now() AS db_now FROM schedules WHERE next_run_at <= now()"
            " ORDER BY next_run_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
    )


async def seconds_until_due(conn: Conn) -> float | None:
    """How long until the soonest schedule is due, by the database's clock (negative: overdue;
    None: none is due ever, all paused or none at all)."""
    value = await conn.fetchval(
        "SELECT extract(epoch FROM min(next_run_at) - clock_timestamp())::float8 FROM schedules"
        " WHERE next_run_at IS NOT NULL"
    )
    return None if value is None else float(value)


async def job_unfinished(conn: Conn, job_id: UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1"
            " AND status IN ('scheduled', 'waiting', 'pending', 'running'))",
            job_id,
        )
    )


async def advance(conn: Conn, schedule_id: UUID, next_run_at: datetime | None) -> None:
    """Move past a slot without a job (skipped: the previous run still going, or fired already)."""
    await conn.execute("UPDATE schedules SET next_run_at = $2 WHERE id = $1", schedule_id, next_run_at)


async def record_run(
    conn: Conn, schedule_id: UUID, ran_at: datetime, job_id: UUID, next_run_at: datetime | None
) -> None:
    await conn.execute(
        "UPDATE schedules SET last_run_at = $2, last_job_id = $3, next_run_at = $4 WHERE id = $1",
        schedule_id,
        ran_at,
        job_id,
        next_run_at,
    )
