"""The upgrade to the schema of delayed jobs, expiry and schedules: a database of the schema before
them, holding jobs, comes up with every row kept, and the upgrade is safe to run twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from jobwire import db
from tests.conftest import database_of

# the schema before delayed jobs (the same one the retention upgrade test starts from)
BEFORE = Path(__file__).parents[1] / "data" / "schema_ea5efd1.sql"


@pytest.fixture
async def old_db() -> AsyncIterator[str]:
    async with database_of(BEFORE.read_text()) as url:
        yield url


async def test_the_upgrade_keeps_every_row_and_runs_twice(old_db: str) -> None:
    conn = await asyncpg.connect(old_db)
    try:
        ids = [uuid.uuid4() for _ in range(3)]
        for job_id, status in zip(ids, ("pending", "running", "completed"), strict=True):
            await conn.execute(
                "INSERT INTO jobs (id, tenant, type, params, priority, status, max_attempts)"
                " VALUES ($1, 'acme', 'demo.sleep', '{}', 'normal', $2, 3)",
                job_id,
                status,
            )
        await db.apply_schema(old_db)
        await db.apply_schema(old_db)
        rows = await conn.fetch("SELECT id, status, run_at, expires_at, schedule_id FROM jobs ORDER BY id")
        assert sorted(r["id"] for r in rows) == sorted(ids)
        assert all(r["run_at"] is None and r["expires_at"] is None and r["schedule_id"] is None for r in rows)
        # the new status is allowed, an unknown one still is not
        await conn.execute("UPDATE jobs SET status = 'scheduled' WHERE id = $1", ids[0])
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE jobs SET status = 'bogus' WHERE id = $1", ids[0])
        checks = await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'jobs'::regclass AND contype = 'c'"
            " AND pg_get_constraintdef(oid) LIKE '%status%'"
        )
        assert checks == 1
    finally:
        await conn.close()
