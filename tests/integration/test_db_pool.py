"""jobwire.db's pools: a pool without asyncpg's reset still never hands on an open transaction."""

from __future__ import annotations

from jobwire import db


async def test_a_connection_left_in_a_transaction_comes_back_rolled_back(database: str) -> None:
    pool = await db.create_pool(database, max_size=1, reset=False)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS pool_probe (n int)")
            # what a caller cancelled between its statements leaves behind
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
        async with pool.acquire() as conn:  # the same, only connection
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
            await conn.execute("DROP TABLE pool_probe")
    finally:
        await pool.close()
