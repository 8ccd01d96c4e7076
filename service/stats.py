"""Queue statistics for the dashboard feed and /metrics: depth per priority, running, jobs
finished per minute, and webhook deliveries pending and failed. Computed from PostgreSQL, cached
briefly per scope so that many dashboards cost one query."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from jobwire import jobstore
from jobwire.webhooks import store as webhookstore
from service import metrics

CACHE_S = 2.0


class QueueStats:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._cache: dict[str | None, tuple[float, dict[str, Any]]] = {}

    async def get(self, tenant: str | None) -> dict[str, Any]:
        """Stats of one tenant, or of every tenant (None)."""
        cached = self._cache.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        counts = await jobstore.queue_counts(self.pool, tenant)
        deliveries = await webhookstore.delivery_counts(self.pool, tenant)
        stats = {
            "normal": counts["normal"],
            "high": counts["high"],
            "running": counts["running"],
            "completed_per_minute": counts["completed"],
            "failed_per_minute": counts["failed"],
            # dead letters of the last hour
            "deliveries": {"pending": deliveries["pending"], "failed": deliveries["failed"]},
        }
        self._cache[tenant] = (time.monotonic(), stats)
        if tenant is None:
            metrics.QUEUE_DEPTH.labels("normal").set(stats["normal"])
            metrics.QUEUE_DEPTH.labels("high").set(stats["high"])
            metrics.JOBS_RUNNING.set(stats["running"])
            metrics.DELIVERIES_PENDING.set(deliveries["pending"])
            metrics.DELIVERIES_DUE.set(deliveries["due"])
        return stats


async def refresh_storage(pool: asyncpg.Pool) -> None:
    """The table and database size gauges, read when /metrics is scraped (a catalog read and a
    stat of each table's files: cheap at any size)."""
    for row in await jobstore.table_sizes(pool):
        if row["table"] is None:
            metrics.DATABASE_BYTES.set(row["bytes"])
        else:
            metrics.TABLE_BYTES.labels(row["table"]).set(row["bytes"])
