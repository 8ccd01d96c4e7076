"""Every SQL statement about webhooks: endpoints, signing secrets, deliveries and their attempts.

Deliveries are created by the job transitions themselves (see `jobstore._outbox`); this module
leases them to dispatchers, records what each attempt did, and serves them to the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from jobwire import db
from jobwire.jobstore import Conn, Row

# a single connection: statements that must commit together
TxConn: TypeAlias = "asyncpg.Connection[Row] | asyncpg.pool.PoolConnectionProxy[Row]"


# ---- tenant signing secrets (for jobs' own webhook_url) -----------------------------------------


async def signing_secret(conn: Conn, tenant: str, candidate: str) -> Row:
    """The tenant's signing secret, created from `candidate` on first use."""
    row = await conn.fetchrow(
        "INSERT INTO webhook_signing_secrets (tenant, secret) VALUES ($1, $2)"
        " ON CONFLICT (tenant) DO UPDATE SET tenant = EXCLUDED.tenant RETURNING *",
        tenant,
        candidate,
    )
    assert row is not None
    return row


async def rotate_signing_secret(conn: Conn, tenant: str, new: str, grace_s: float) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO webhook_signing_secrets AS s (tenant, secret) VALUES ($1, $2)"
        " ON CONFLICT (tenant) DO UPDATE SET previous_secret = s.secret,"
        " previous_expires_at = now() + make_interval(secs => $3), secret = EXCLUDED.secret,"
        " rotated_at = now() RETURNING *",
        tenant,
        new,
        grace_s,
    )
    assert row is not None
    return row


# ---- endpoints -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    id: UUID
    tenant: str
    url: str
    events: Sequence[str]
    description: str
    secret: str


async def create_endpoint(conn: Conn, ep: NewEndpoint) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO webhook_endpoints (id, tenant, url, events, description, secret)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        ep.id,
        ep.tenant,
        ep.url,
        list(ep.events),
        ep.description,
        ep.secret,
    )
    assert row is not None
    return row


async def get_endpoint(conn: Conn, endpoint_id: UUID, tenant: str | None) -> Row | None:
    return await conn.fetchrow(
        "SELECT * FROM webhook_endpoints WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)",
        endpoint_id,
        tenant,
    )


async def list_endpoints(
    conn: Conn, tenant: str | None, limit: int, after: tuple[datetime, UUID] | None
) -> list[Row]:
    return await db.newest_first(conn, "webhook_endpoints", tenant, limit, after)


async def update_endpoint(
    conn: TxConn, endpoint_id: UUID, tenant: str | None, changes: dict[str, Any]
) -> Row | None:
    """Apply `changes` (url, events, description, disabled); re-enabling clears the failure state."""
    sets: list[str] = ["updated_at = now()"]
    args: list[Any] = [endpoint_id, tenant]
    for column in ("url", "events", "description"):
        if column in changes:
            args.append(list(changes[column]) if column == "events" else changes[column])
            sets.append(f"{column} = ${len(args)}")
    if changes.get("disabled") is True:
        sets += [
            "disabled_at = COALESCE(disabled_at, now())",
            "disabled_reason = COALESCE(disabled_reason, 'disabled through the API')",
        ]
    elif changes.get("disabled") is False:
        sets += ["disabled_at = NULL", "disabled_reason = NULL", "failing_since = NULL"]
    async with conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE webhook_endpoints SET {', '.join(sets)}"
            " WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) RETURNING *",
            *args,
        )
        if row is not None and row["disabled_at"] is not None:
            await _fail_pending(conn, [endpoint_id], f"endpoint disabled: {row['disabled_reason']}")
    return row


async def delete_endpoint(conn: Conn, endpoint_id: UUID, tenant: str | None) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) RETURNING id",
        endpoint_id,
        tenant,
    )
    return deleted is not None


async def rotate_endpoint_secret(
    conn: Conn, endpoint_id: UUID, tenant: str | None, new: str, grace_s: float
) -> Row | None:
    return await conn.fetchrow(
        "UPDATE webhook_endpoints SET previous_secret = secret,"
        " previous_expires_at = now() + make_interval(secs => $4), secret = $3, updated_at = now()"
        " WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) RETURNING *",
        endpoint_id,
        tenant,
        new,
        grace_s,
    )


async def disable_endpoints(conn: TxConn, reasons: dict[UUID, str]) -> list[UUID]:
    """Disable endpoints (410 Gone, failing too long) and fail their pending deliveries."""
    if not reasons:
        return []
    async with conn.transaction():
        rows = await conn.fetch(
            "UPDATE webhook_endpoints ep"
            " SET disabled_at = now(), disabled_reason = r.reason, updated_at = now()"
            " FROM unnest($1::uuid[], $2::text[]) AS r(id, reason)"
            " WHERE ep.id = r.id AND ep.disabled_at IS NULL RETURNING ep.id, ep.disabled_reason",
            list(reasons),
            list(reasons.values()),
        )
        for row in rows:
            await _fail_pending(conn, [row["id"]], f"endpoint disabled: {row['disabled_reason']}")
    return [r["id"] for r in rows]


async def _fail_pending(conn: Conn, endpoint_ids: list[UUID], reason: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', last_error = $2, lease = NULL"
        " WHERE endpoint_id = ANY($1::uuid[]) AND status = 'pending'",
        endpoint_ids,
        reason,
    )


# ---- deliveries: the dispatcher's side ---------------------------------------------------------

# Candidates first, at most `room` per destination (the per-destination concurrency cap), from a
# bounded window of the most overdue, leaving out destinations with no room at all (so a backlog
# for a saturated receiver does not fill the window and starve the others); then lease them with
# SKIP LOCKED so that dispatchers running side by side never take the same row. The lease moves
# next_attempt_at past the attempt's deadline: a dispatcher that dies mid-attempt leaves the
# delivery due again when the lease ends.
_CLAIM = """
WITH room AS (
    SELECT * FROM unnest($2::text[], $3::int[]) AS r(destination, room)
), window_ AS (
    SELECT id, destination, next_attempt_at,
           row_number() OVER (PARTITION BY destination ORDER BY next_attempt_at, id) AS rank
    FROM (SELECT id, destination, next_attempt_at FROM deliveries
          WHERE status = 'pending' AND next_attempt_at <= now() AND destination <> ALL($8::text[])
          ORDER BY next_attempt_at LIMIT $6) due
), candidates AS (
    SELECT w.id FROM window_ w LEFT JOIN room r USING (destination)
    WHERE w.rank <= COALESCE(r.room, $4)
    ORDER BY w.next_attempt_at LIMIT $1
), leased AS (
    SELECT d.id FROM deliveries d
    WHERE d.id IN (SELECT id FROM candidates) AND d.status = 'pending' AND d.next_attempt_at <= now()
    FOR UPDATE SKIP LOCKED
), u AS (
    UPDATE deliveries d SET next_attempt_at = now() + make_interval(secs => $5), lease = $7
    FROM leased WHERE d.id = leased.id
    RETURNING d.*
)
SELECT u.id, u.tenant, u.job_id, u.batch_id, u.seq, u.endpoint_id, u.url, u.destination, u.event_type, u.job,
       u.attempts, u.schedule_base, u.created_at, u.lease,
       ep.disabled_at IS NOT NULL AS endpoint_disabled,
       COALESCE(ep.secret, s.secret) AS secret,
       CASE WHEN ep.id IS NOT NULL THEN
                CASE WHEN ep.previous_expires_at > now() THEN ep.previous_secret END
            ELSE CASE WHEN s.previous_expires_at > now() THEN s.previous_secret END
       END AS previous_secret
FROM u
LEFT JOIN webhook_endpoints ep ON ep.id = u.endpoint_id
LEFT JOIN webhook_signing_secrets s ON u.endpoint_id IS NULL AND s.tenant = u.tenant
"""


async def claim(
    conn: Conn,
    *,
    limit: int,
    room: dict[str, int],
    default_room: int,
    lease_s: float,
    lease: UUID,
) -> list[Row]:
    """Lease up to `limit` due deliveries, at most `room[d]` (else `default_room`) to destination d."""
    partial = {d: n for d, n in room.items() if n > 0}
    saturated = [d for d, n in room.items() if n <= 0]
    # the window bounds the scan and the sort (the most overdue first); destinations without room
    # are not in it, so it only needs to be about as large as what is asked for
    window = max(64, min(512, limit))
    return list(
        await conn.fetch(
            _CLAIM,
            limit,
            list(partial),
            list(partial.values()),
            default_room,
            lease_s,
            window,
            lease,
            saturated,
        )
    )


async def seconds_until_due(conn: Conn) -> float | None:
    """How long until the next pending delivery is due (negative: overdue), None when none is."""
    value = await conn.fetchval(
        "SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - now())::float8 FROM deliveries"
        " WHERE status = 'pending'"
    )
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt did, and what becomes of its delivery."""

    delivery_id: UUID
    lease: UUID
    status: str  # the delivery's new status: delivered, pending (retry at next_attempt_at) or failed
    at: datetime  # when the attempt started
    duration_ms: float
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None


_RECORD = """
WITH o AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::real[], $6::int[],
                         $7::text[], $8::timestamptz[])
        AS o(id, lease, status, at, duration_ms, status_code, error, next_at)
), a AS (
    INSERT INTO delivery_attempts (delivery_id, at, status_code, error, duration_ms)
    SELECT o.id, o.at, o.status_code, o.error, o.duration_ms FROM o JOIN deliveries d ON d.id = o.id
)
UPDATE deliveries d SET
    status = o.status, attempts = d.attempts + 1, last_status_code = o.status_code, last_error = o.error,
    next_attempt_at = COALESCE(o.next_at, d.next_attempt_at), lease = NULL,
    delivered_at = CASE WHEN o.status = 'delivered' THEN now() ELSE d.delivered_at END
FROM o
-- only while this dispatcher still holds the lease: a delivery failed meanwhile (its endpoint was
-- disabled) or leased again after a stall keeps what happened since
WHERE d.id = o.id AND d.lease = o.lease AND d.status = 'pending'
RETURNING d.id, d.endpoint_id, d.status, d.created_at, d.delivered_at
"""


async def record(conn: Conn, outcomes: Sequence[Outcome]) -> list[Row]:
    """Record many attempts (and their deliveries' new state) in one statement."""
    return list(
        await conn.fetch(
            _RECORD,
            [o.delivery_id for o in outcomes],
            [o.lease for o in outcomes],
            [o.status for o in outcomes],
            [o.at for o in outcomes],
            [o.duration_ms for o in outcomes],
            [o.status_code for o in outcomes],
            [o.error for o in outcomes],
            [o.next_attempt_at for o in outcomes],
        )
    )


async def endpoint_health(conn: Conn, results: dict[UUID, bool]) -> list[Row]:
    """Track how long each endpoint has been failing: a success clears it, a failure starts the clock
    unless it is running already. Returns (id, failing_since)."""
    if not results:
        return []
    return list(
        await conn.fetch(
            "UPDATE webhook_endpoints ep SET failing_since ="
            " CASE WHEN r.ok THEN NULL ELSE COALESCE(ep.failing_since, now()) END"
            " FROM unnest($1::uuid[], $2::bool[]) AS r(id, ok) WHERE ep.id = r.id"
            " RETURNING ep.id, ep.failing_since",
            list(results),
            list(results.values()),
        )
    )


async def release(conn: Conn, lease: UUID, ids: Sequence[UUID]) -> None:
    """Hand leased deliveries back, due now (a dispatcher stopping before it attempted them)."""
    await conn.execute(
        "UPDATE deliveries SET next_attempt_at = now(), lease = NULL"
        " WHERE id = ANY($1::uuid[]) AND lease = $2 AND status = 'pending'",
        list(ids),
        lease,
    )


# ---- deliveries: the API's side ----------------------------------------------------------------


async def list_deliveries(
    conn: Conn,
    *,
    tenant: str | None,
    job_id: UUID | None = None,
    endpoint_id: UUID | None = None,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[Row]:
    column, value = ("job_id", job_id) if job_id is not None else ("endpoint_id", endpoint_id)
    return list(
        await conn.fetch(
            f"SELECT * FROM deliveries WHERE {column} = $1 AND ($2::text IS NULL OR tenant = $2)"
            " AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))"
            " ORDER BY created_at DESC, id DESC LIMIT $5",
            value,
            tenant,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )


async def get_delivery(conn: Conn, delivery_id: UUID, tenant: str | None) -> Row | None:
    return await conn.fetchrow(
        "SELECT * FROM deliveries WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)", delivery_id, tenant
    )


async def attempts_of(conn: Conn, delivery_ids: Sequence[UUID]) -> dict[UUID, list[Row]]:
    rows = await conn.fetch(
        "SELECT * FROM delivery_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, id",
        list(delivery_ids),
    )
    history: dict[UUID, list[Row]] = {d: [] for d in delivery_ids}
    for row in rows:
        history[row["delivery_id"]].append(row)
    return history


async def redeliver(conn: Conn, delivery_id: UUID, tenant: str | None) -> Row | None:
    """Make a delivery due now with a fresh retry schedule (same webhook-id). None when it does not
    exist (or is another tenant's)."""
    return await conn.fetchrow(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = now(), schedule_base = attempts,"
        " lease = NULL, delivered_at = NULL"
        " WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) RETURNING *",
        delivery_id,
        tenant,
    )


async def delivery_counts(conn: Conn, tenant: str | None) -> Row:
    """Pending and due deliveries now, and those that failed (dead letters) in the last hour."""
    row = await conn.fetchrow(
        "SELECT"
        " (SELECT count(*) FROM deliveries WHERE status = 'pending' AND ($1::text IS NULL OR tenant = $1))"
        "   AS pending,"
        " (SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
        "   AND ($1::text IS NULL OR tenant = $1)) AS due,"
        " (SELECT count(*) FROM deliveries WHERE status = 'failed' AND created_at > now() - interval '1 hour'"
        "   AND ($1::text IS NULL OR tenant = $1)) AS failed",
        tenant,
    )
    assert row is not None
    return row
