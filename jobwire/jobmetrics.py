"""Counters kept in Redis so that any api's /metrics shows the whole deployment: workers add job
outcomes and durations as jobs finish, dispatchers add webhook attempts, finished deliveries and
delivery latency, the retention purge (wherever it runs) the rows it deleted; the api reads them
when scraped.

Losing them with Redis resets the counters, which Prometheus handles as a counter reset.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from jobwire.keys import Keys

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, math.inf)


def _bucket(seconds: float) -> str:
    return next(repr(b) if b != math.inf else "+Inf" for b in BUCKETS if seconds <= b)


# a finished job, as the metrics see it: (job type, outcome, run time in seconds or None)
Outcome = tuple[str, str, float | None]


def add_job_outcomes(pipe: Pipeline, keys: Keys, outcomes: Sequence[Outcome]) -> None:
    """Queue the counters of finished jobs on `pipe` (the worker sends them with the jobs' last
    events, one round trip for both), one command per counter, not per job."""
    for (job_type, outcome), n in Counter((t, o) for t, o, _ in outcomes).items():
        pipe.hincrby(keys.metrics_outcomes, f"{job_type}|{outcome}", n)
    timed = [(t, d) for t, _, d in outcomes if d is not None]
    for (job_type, bucket), n in Counter((t, _bucket(d)) for t, d in timed).items():
        pipe.hincrby(keys.metrics_durations, f"{job_type}|{bucket}", n)
    sums: dict[str, float] = {}
    for job_type, duration in timed:
        sums[job_type] = sums.get(job_type, 0.0) + duration
    for job_type, total in sums.items():
        pipe.hincrbyfloat(keys.metrics_durations, f"{job_type}|sum", total)


# seconds from a delivery's creation (the job change) to the receiver's 2xx
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0, math.inf)


def _delivery_bucket(seconds: float) -> str:
    return next(repr(b) if b != math.inf else "+Inf" for b in DELIVERY_BUCKETS if seconds <= b)


async def record_deliveries(
    redis: Redis,
    keys: Keys,
    attempts: Counter[str],
    finished: Counter[str],
    latencies: Sequence[float],
) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for outcome, n in attempts.items():
            pipe.hincrby(keys.metrics_webhooks, f"attempt|{outcome}", n)
        for status, n in finished.items():
            pipe.hincrby(keys.metrics_webhooks, f"delivery|{status}", n)
        # one command per bucket, not per delivery
        for bucket, n in Counter(_delivery_bucket(latency) for latency in latencies).items():
            pipe.hincrby(keys.metrics_webhooks, f"latency|{bucket}", n)
        if latencies:
            pipe.hincrbyfloat(keys.metrics_webhooks, "latency|sum", sum(latencies))
        await pipe.execute()


async def record_purged(redis: Redis, keys: Keys, rows: Mapping[str, int]) -> None:
    """Rows a purge deleted, by table: one command per table that lost any."""
    async with redis.pipeline(transaction=False) as pipe:
        for table, n in rows.items():
            if n:
                pipe.hincrby(keys.metrics_purged, table, n)
        await pipe.execute()


def _cumulative(buckets: Sequence[float], counts: dict[str, float]) -> list[tuple[str, float]]:
    running = 0.0
    out: list[tuple[str, float]] = []
    for b in buckets:
        name = "+Inf" if b == math.inf else repr(b)
        running += counts.get(name, 0.0)
        out.append((name, running))
    return out


class JobMetricsCollector(Collector):
    """Serves the last snapshot read from Redis (collect() is synchronous; refresh() is not)."""

    def __init__(self) -> None:
        self.outcomes: dict[bytes, bytes] = {}
        self.durations: dict[bytes, bytes] = {}
        self.webhooks: dict[bytes, bytes] = {}
        self.purged: dict[bytes, bytes] = {}

    async def refresh(self, redis: Redis, keys: Keys) -> None:
        self.outcomes = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.metrics_outcomes))
        self.durations = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.metrics_durations))
        self.webhooks = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.metrics_webhooks))
        self.purged = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.metrics_purged))

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
            histogram.add_metric([job_type], _cumulative(BUCKETS, counts), counts.get("sum", 0.0))
        yield histogram
        yield from self._webhook_families()
        purged = CounterMetricFamily(
            "jobwire_purged_rows",
            "Rows deleted by the retention purge, by table (expired idempotency keys included)",
            labels=["table"],
        )
        for field, value in sorted(self.purged.items()):
            purged.add_metric([field.decode()], float(value))
        yield purged

    def _webhook_families(self) -> Iterable[Any]:
        series: dict[str, dict[str, float]] = {"attempt": {}, "delivery": {}, "latency": {}}
        for field, value in self.webhooks.items():
            kind, _, label = field.decode().partition("|")
            series.setdefault(kind, {})[label] = float(value)
        attempts = CounterMetricFamily(
            "jobwire_webhook_attempts",
            "Webhook delivery attempts, by outcome (success, 4xx, 5xx, error: no answer)",
            labels=["outcome"],
        )
        for outcome, n in sorted(series["attempt"].items()):
            attempts.add_metric([outcome], n)
        yield attempts
        deliveries = CounterMetricFamily(
            "jobwire_webhook_deliveries",
            "Webhook deliveries that ended, by outcome (delivered, failed: dead letter)",
            labels=["outcome"],
        )
        for status, n in sorted(series["delivery"].items()):
            deliveries.add_metric([status], n)
        yield deliveries
        latency = HistogramMetricFamily(
            "jobwire_webhook_delivery_latency_seconds",
            "Time from the job change to the receiver's 2xx, retries included",
        )
        counts = series["latency"]
        latency.add_metric([], _cumulative(DELIVERY_BUCKETS, counts), counts.get("sum", 0.0))
        yield latency
