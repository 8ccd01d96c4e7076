"""Every SQL statement about batches (table `batches`, `batch_checks`) and their webhooks, but the
retention purge's (jobstore.py, beside the jobs' purge it follows).

The jobs of a batch are rows of `jobs` like any other (jobstore.py owns them); a batch row never
changes when one of its jobs does. A trigger on `jobs` notes every batch job that reaches a terminal
status in `batch_checks`; the settle loop (jobwire/batches.py) consumes those notes and settles the
batches whose jobs are all terminal: it keeps their final counts, ends a running one `completed`,
and owes its webhook, all in one transaction, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from jobwire import db
from jobwire.batch import WEBHOOK_EVENTS, BatchStatus, Tally, batch_view, progress_of
from jobwire.jobstore import Conn, Row, batch_tallies


async def insert_batch(
    conn: Conn, batch_id: UUID, tenant: str, total: int, labels: dict[str, str], webhook_url: str | None
) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO batches (id, tenant, total, labels, webhook_url)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING *",
        batch_id,
        tenant,
        total,
        labels,
        webhook_url,
    )
    assert row is not None  # an INSERT ... RETURNING returns its row
    return row


async def get_batch(conn: Conn, batch_id: UUID, tenant: str | None) -> Row | None:
    """The batch, or None when it does not exist or belongs to another tenant (tenant None: any)."""
    return await conn.fetchrow(
        "SELECT * FROM batches WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)", batch_id, tenant
    )


async def stream_open(conn: Conn, batch_id: UUID, tenant: str, grace_s: float) -> bool:
    """Whether an expired stream token of this batch is still good: the batch has not ended, or
    ended less than `grace_s` ago."""
    return bool(
        await conn.fetchval(
            "SELECT settled_at IS NULL OR settled_at > now() - make_interval(secs => $3)"
            " FROM batches WHERE id = $1 AND tenant = $2",
            batch_id,
            tenant,
            float(grace_s),
        )
    )


async def list_batches(
    conn: Conn, tenant: str | None, limit: int, after: tuple[datetime, UUID] | None
) -> list[Row]:
    return await db.newest_first(conn, "batches", tenant, limit, after)


async def mark_cancelled(conn: Conn, batch_id: UUID, tenant: str | None) -> Row | None:
    """A running batch becomes `cancelled` (None: it is not running, or not the tenant's); its
    finished_at waits for its settling, when every job has ended. Its jobs
    are cancelled in the same transaction (jobstore.cancel_batch_jobs), and a check is noted, so the
    batch settles even when every job had already ended."""
    row = await conn.fetchrow(
        "UPDATE batches SET status = 'cancelled', updated_at = now()"
        " WHERE id = $1 AND status = 'running' AND ($2::text IS NULL OR tenant = $2) RETURNING *",
        batch_id,
        tenant,
    )
    if row is not None:
        await add_check(conn, batch_id)
    return row


async def add_check(conn: Conn, batch_id: UUID) -> None:
    await conn.execute("INSERT INTO batch_checks (batch_id) VALUES ($1)", batch_id)


async def take_checks(conn: Conn, limit: int) -> list[UUID]:
    """Take (delete, in the caller's transaction) up to `limit` noted checks; the batches they name.
    SKIP LOCKED: settle loops side by side take different notes."""
    rows = await conn.fetch(
        "DELETE FROM batch_checks WHERE ctid = ANY(ARRAY("
        " SELECT ctid FROM batch_checks LIMIT $1 FOR UPDATE SKIP LOCKED)) RETURNING batch_id",
        limit,
    )
    return sorted({r["batch_id"] for r in rows})


async def settle(conn: Conn, batch_ids: Sequence[UUID]) -> list[Row]:
    """Settle those of `batch_ids` whose jobs are all terminal, owing their webhooks; returns the
    settled rows. Call in a transaction.

    The batch rows are locked first, in one statement, and the jobs are read by the next one, with
    a snapshot taken after the lock is held: two settle loops holding notes of the same batch take
    turns, and the second sees every job the first could not, so the last job's note always settles
    its batch (the note commits with the job's terminal transition). A settled batch is never
    settled again (`settled_at`): one terminal event, one webhook."""
    locked = await conn.fetch(
        "SELECT id, total FROM batches WHERE id = ANY($1::uuid[]) AND settled_at IS NULL"
        " ORDER BY id FOR UPDATE",
        sorted(batch_ids),
    )
    if not locked:
        return []
    tallies = await batch_tallies(conn, [r["id"] for r in locked])
    done = [(r["id"], r["total"], t) for r in locked if (t := tallies.get(r["id"], Tally())).unfinished == 0]
    if not done:
        return []
    # the clock now, not the transaction's start: the jobs whose notes this read committed after
    # it began, and the batch ends (and owes its webhook) after every one of them
    settled = list(
        await conn.fetch(
            "UPDATE batches b SET settled_at = clock_timestamp(), updated_at = clock_timestamp(),"
            " finished_at = clock_timestamp(),"
            " status = CASE WHEN b.status = 'running' THEN 'completed' ELSE b.status END,"
            " final_counts = f.counts, final_progress = f.progress, last_seq = f.seq"
            " FROM unnest($1::uuid[], $2::jsonb[], $3::float8[], $4::bigint[])"
            "   AS f(id, counts, progress, seq)"
            " WHERE b.id = f.id RETURNING b.*",
            [d[0] for d in done],
            [d[2].counts for d in done],
            [progress_of(d[1], d[2].progress_sum) for d in done],
            # the id of the terminal stream event: after every progress event's (a version)
            [d[2].version + 1 for d in done],
        )
    )
    await _owe_webhooks(conn, settled)
    return settled


async def _owe_webhooks(conn: Conn, rows: Sequence[Row]) -> None:
    """The settled batches' webhooks: one to the batch's webhook_url (signed with the tenant's
    signing secret) and one per endpoint of the tenant subscribed to the event, inserted in the
    settling transaction (the same outbox as jobs' deliveries). `job` holds the batch
    representation, as the body's `data`."""
    if not rows:
        return
    events = [WEBHOOK_EVENTS[BatchStatus(r["status"])] for r in rows]
    views = [batch_view(r, None) for r in rows]
    await conn.execute(
        """
        WITH b AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
                AS t(batch_id, tenant, webhook_url, event_type, view)
        )
        INSERT INTO deliveries (id, tenant, job_id, batch_id, seq, endpoint_id, url, destination,
                                event_type, job, created_at)
        SELECT gen_random_uuid(), b.tenant, NULL::uuid, b.batch_id, 1, NULL::uuid, b.webhook_url,
               'url:' || coalesce(substring(b.webhook_url from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+'),
                                  'unparsable'),
               b.event_type, b.view, clock_timestamp()
        FROM b WHERE b.webhook_url IS NOT NULL
        UNION ALL
        SELECT gen_random_uuid(), b.tenant, NULL::uuid, b.batch_id, 1, ep.id, ep.url, 'endpoint:' || ep.id,
               b.event_type, b.view, clock_timestamp()
        FROM b JOIN webhook_endpoints ep
          ON ep.tenant = b.tenant AND ep.disabled_at IS NULL AND b.event_type = ANY(ep.events)""",
        [r["id"] for r in rows],
        [r["tenant"] for r in rows],
        [r["webhook_url"] for r in rows],
        events,
        views,
    )
