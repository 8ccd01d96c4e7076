"""The retention purge: deletes finished jobs past their retention (jobwire/retention.py) with
everything that belongs to them, then the settled batches past theirs that no job is left in, and
expires idempotency keys past their 24 h.

Every worker runs the loop every JOBWIRE_PURGE_INTERVAL_S; `jobwire purge` runs one pass by hand.
One pass runs at a time across the deployment (a session advisory lock on the pass's own
connection; a worker that finds it taken skips its turn). A pass deletes in bounded batches, one
short transaction each, found through indexes, so its cost follows what it deletes and not the size
of the tables; its row locks are on finished jobs and settled batches only (SKIP LOCKED), and a
`lock_timeout` makes it give way rather than queue behind a migration. After a pass that deleted
rows it VACUUMs the tables it touched, so the space is reused at once instead of when autovacuum's
thresholds are crossed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis

from jobwire import db, jobmetrics, jobstore
from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from jobwire.retention import FINISHED, PURGED_TABLES, RetentionPolicy, Rule

log = get_logger("jobwire.purger")

# jobs per batch: one statement and one commit of a few milliseconds each (bench/retention.py)
BATCH = 1000
# between two full batches, a pause this many times as long as the batch took
BACKLOG_PAUSE = 1.0
# session settings of the purge's connection: never wait long for a lock (give way to a
# migration's DDL; the next pass resumes), and no statement may run away
SERVER_SETTINGS = {"lock_timeout": "1000", "statement_timeout": "60000", "application_name": "jobwire purge"}
# what ends a pass early without being a bug: the database unreachable, or a lock it gave way on
GAVE_WAY: tuple[type[BaseException], ...] = (
    *db.UNAVAILABLE,
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,
)


@dataclass
class PurgeReport:
    ran: bool  # False: another pass held the lock (the worker loop does not wait for it)
    dry_run: bool = False
    # rows deleted (or, in a dry run, that would be), by table (retention.PURGED_TABLES);
    # idempotency_keys counts the keys that went with their jobs or batches and the expired ones,
    # deliveries and delivery_attempts those of jobs and of batches
    rows: Counter[str] = field(default_factory=Counter)
    expired_keys: int = 0
    vacuumed: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def jobs(self) -> int:
        return self.rows["jobs"]

    @property
    def batches(self) -> int:
        return self.rows["batches"]


class Purger:
    def __init__(
        self,
        settings: Settings,
        policy: RetentionPolicy,
        redis: Redis | None,
        keys: Keys,
        *,
        batch: int = BATCH,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.redis = redis
        self.keys = keys
        self.batch = batch

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.purge_interval_s * random.uniform(0.8, 1.2))
            try:
                await self.pass_once()
            except GAVE_WAY as exc:
                log.warning("purge pass ended early; the next one resumes", error=str(exc))
            except Exception:  # a background loop must outlive a bad pass: log it, try again later
                log.exception("purge pass failed")

    async def pass_once(self, *, wait: bool = False, dry_run: bool = False) -> PurgeReport:
        """One pass. `wait`: wait for a pass under way elsewhere to end, then run (the command);
        otherwise skip when one is under way (the loop)."""
        # its own session (the advisory lock lives as long as it): never through a transaction pooler
        conn = await asyncpg.connect(
            db.session_url(self.settings), timeout=10, server_settings=SERVER_SETTINGS
        )
        try:
            if wait:
                await jobstore.purge_lock(conn)
            elif not await jobstore.try_purge_lock(conn):
                return PurgeReport(ran=False, dry_run=dry_run)
            started = time.monotonic()
            report = await (self._preview(conn) if dry_run else self._purge(conn))
            report.duration_s = time.monotonic() - started
        finally:
            # ending the session releases the advisory lock, however the pass ended
            with contextlib.suppress(*db.UNAVAILABLE):
                await conn.close(timeout=5)
        if report.rows.total():
            log.info(
                "would purge" if dry_run else "purged",
                **report.rows,
                expired_keys=report.expired_keys,
                seconds=round(report.duration_s, 3),
            )
        return report

    async def _rules(self, conn: asyncpg.Connection) -> list[Rule]:
        return self.policy.rules(await jobstore.finished_kinds(conn, FINISHED))

    async def _preview(self, conn: asyncpg.Connection) -> PurgeReport:
        report = PurgeReport(ran=True, dry_run=True)
        rules = await self._rules(conn)
        report.rows.update(await jobstore.purge_preview(conn, rules, self.policy.batch_rules()))
        report.expired_keys = await jobstore.expired_idempotency_keys(conn)
        report.rows["idempotency_keys"] += report.expired_keys
        return report

    async def _purge(self, conn: asyncpg.Connection) -> PurgeReport:
        report = PurgeReport(ran=True)
        rules = await self._rules(conn)
        if rules:
            await self._rounds(report, "jobs", lambda: jobstore.purge_batch(conn, rules, limit=self.batch))
        # after the jobs: the batches whose last jobs this pass purged go in the same pass
        batch_rules = self.policy.batch_rules()
        if batch_rules:
            await self._rounds(
                report,
                "batches",
                lambda: jobstore.purge_settled_batches(conn, batch_rules, limit=self.batch),
            )
        while True:
            expired = await jobstore.expire_idempotency_keys(conn, limit=self.batch)
            await self._count({"idempotency_keys": expired})
            report.expired_keys += expired
            report.rows["idempotency_keys"] += expired
            if expired < self.batch:
                break
        report.vacuumed = [t for t in PURGED_TABLES if report.rows[t]]
        await jobstore.vacuum(conn, report.vacuumed)
        return report

    async def _rounds(
        self, report: PurgeReport, table: str, purge_round: Callable[[], Awaitable[dict[str, int]]]
    ) -> None:
        """Bounded rounds of one purge statement until a round deletes fewer `table` rows than a
        full one."""
        while True:
            started = time.monotonic()
            rows = await purge_round()
            await self._count(rows)
            report.rows.update(rows)
            if rows[table] < self.batch:
                return
            # a backlog (the first pass over months of jobs) is worked off at half the database's
            # pace: the submitters and workers beside it keep their share of the disk and CPU
            await asyncio.sleep((time.monotonic() - started) * BACKLOG_PAUSE)

    async def _count(self, rows: dict[str, int]) -> None:
        """Into the counters every api's /metrics shows; a Redis outage loses counts, not the pass."""
        if self.redis is not None and any(rows.values()):
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                await jobmetrics.record_purged(self.redis, self.keys, rows)
