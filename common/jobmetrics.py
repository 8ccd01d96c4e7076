"""Job outcome counters and durations, kept in Redis so that any api's /metrics shows the whole
deployment: workers add to them as jobs finish, the api reads them when scraped.

Losing them with Redis resets the counters, which Prometheus handles as a counter reset.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Iterable
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from common.keys import Keys

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, math.inf)


def _bucket(seconds: float) -> str:
    return next(repr(b) if b != math.inf else "+Inf" for b in BUCKETS if seconds <= b)


async def record(redis: Redis, keys: Keys, job_type: str, outcome: str, duration_s: float | None) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(keys.metrics_outcomes, f"{job_type}|{outcome}", 1)
        if duration_s is not None:
            pipe.hincrby(keys.metrics_durations, f"{job_type}|{_bucket(duration_s)}", 1)
            pipe.hincrbyfloat(keys.metrics_durations, f"{job_type}|sum", duration_s)
        await pipe.execute()


class JobMetricsCollector(Collector):
    """Serves the last snapshot read from Redis (collect() is synchronous; refresh() is not)."""

    def __init__(self) -> None:
        self.outcomes: dict[bytes, bytes] = {}
        self.durations: dict[bytes, bytes] = {}

    async def refresh(self, redis: Redis, keys: Keys) -> None:
        self.outcomes = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.metrics_outcomes))
        self.durations = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.metrics_durations))

    def collect(self) -> Iterable[Any]:
        finished = CounterMetricFamily(
            "jobwire_jobs_finished",
            "Jobs that reached a terminal state, by type and outcome",
            labels=["type", "outcome"],
        )
        for field, value in sorted(self.outcomes.items()):
            job_type, _, outcome = field.decode().rpartition("|")
            finished.add_metric([job_type, outcome], float(value))
        yield finished

        per_type: dict[str, dict[str, float]] = {}
        for field, value in self.durations.items():
            job_type, _, bucket = field.decode().rpartition("|")
            per_type.setdefault(job_type, {})[bucket] = float(value)
        histogram = HistogramMetricFamily(
            "jobwire_job_duration_seconds", "Run time of completed jobs, by type", labels=["type"]
        )
        for job_type, counts in sorted(per_type.items()):
            running = 0.0
            buckets: list[tuple[str, float]] = []
            for b in BUCKETS:
                name = "+Inf" if b == math.inf else repr(b)
                running += counts.get(name, 0.0)
                buckets.append((name, running))
            histogram.add_metric([job_type], buckets, counts.get("sum", 0.0))
        yield histogram
