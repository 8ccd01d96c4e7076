"""The upgrade to the schema of schedules: a database of the schema before them (delayed jobs and
expiry included), holding jobs of a schedule, comes up with every row kept, and twice is safe."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from jobwire import db
from tests.conftest import database_of

BEFORE = Path(__file__).parents[1] / "data" / "schema_before_schedules.sql"


@pytest.fixture
async def old_db() -> AsyncIterator[str]:
    async with database_of(BEFORE.read_text()) as url:
        yield url


async def test_the_upgrade_keeps_every_row_and_runs_twice(old_db: str) -> None:
    conn = await asyncpg.connect(old_db)
    try:
        schedule_id = uuid.uuid4()
        ids = [uuid.uuid4() for _ in range(3)]
        for job_id, status in zip(ids, ("scheduled", "running", "completed"), strict=True):
            await conn.execute(
                "INSERT INTO jobs (id, tenant, type, params, priority, status, max_attempts, schedule_id)"
                " VALUES ($1, 'acme', 'demo.sleep', '{}', 'normal', $2, 3, $3)",
                job_id,
                status,
                schedule_id,
            )
        await db.apply_schema(old_db)
        await db.apply_schema(old_db)
        rows = await conn.fetch("SELECT id, status, schedule_id, schedule_slot FROM jobs ORDER BY id")
        assert sorted(r["id"] for r in rows) == sorted(ids)
        assert all(r["schedule_id"] == schedule_id and r["schedule_slot"] is None for r in rows)
        # jobs without a slot (triggers, jobs from before) never collide; two for one slot do
        slot_of = "UPDATE jobs SET schedule_slot = '2030-01-01T00:00:00Z' WHERE id = $1"
        await conn.execute(slot_of, ids[0])
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(slot_of, ids[1])
        await conn.execute(
            "INSERT INTO schedules (id, tenant, name, interval_s, job_type, job_params, job_priority,"
            " job_max_attempts) VALUES ($1, 'acme', 'n', 60, 'demo.sleep', '{}', 'normal', 3)",
            schedule_id,
        )
        with pytest.raises(asyncpg.CheckViolationError):  # cron and interval_s: exactly one
            await conn.execute(
                "INSERT INTO schedules (id, tenant, name, job_type, job_params, job_priority,"
                " job_max_attempts) VALUES ($1, 'acme', 'm', 'demo.sleep', '{}', 'normal', 3)",
                uuid.uuid4(),
            )
    finally:
        await conn.close()
