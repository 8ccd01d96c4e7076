"""Pure functions and small classes, no servers."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from jobwire.config import Settings
from jobwire.context import JobContext
from jobwire.ids import new_id
from jobwire.job import iso
from jobwire.jobstore import decode_cursor, encode_cursor
from jobwire.keys import Keys
from jobwire.queue import HIGH_PRIORITY_LEAD_MS, QueuedJob, score
from jobwire.registry import Backoff, Registry, job_type
from jobwire.tokens import StreamTokens
from jobwire.webhooks.ssrf import BlockedDestination, check_url, is_public
from workers.progress import ProgressReporter


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter() -> None:
    b = Backoff(base_s=5, factor=3, max_s=100, jitter=0.2)
    rng = random.Random(7)
    for n, raw in ((1, 5), (2, 15), (3, 45), (4, 100), (9, 100)):
        delays = [b.delay(n, rng) for _ in range(200)]
        assert min(delays) >= raw * 0.8 - 1e-9 and max(delays) <= raw * 1.2 + 1e-9
        assert max(delays) - min(delays) > raw * 0.2  # jitter spreads retries out


def test_stream_tokens_are_job_scoped_and_expire() -> None:
    tokens = StreamTokens("secret", ttl_s=3600)
    job = str(uuid.uuid4())
    token = tokens.issue(job, "acme", 7, now=1_000_000)
    assert tokens.verify(token, now=1_000_000) == (job, "acme", 7)  # with the key that minted it
    assert tokens.issue(job, "acme", 7, now=1_000_100) == token  # stable within a window
    assert tokens.issue(job, "acme", 8, now=1_000_000) != token
    assert tokens.verify(token, now=1_000_000 + 3 * 3600) is None
    assert StreamTokens("other", 3600).verify(token, now=1_000_000) is None
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert tokens.verify(tampered, now=1_000_000) is None
    assert tokens.verify("garbage", now=1_000_000) is None


def test_cursor_round_trips_and_rejects_garbage() -> None:
    row = {"created_at": datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC), "id": uuid.uuid4()}
    assert decode_cursor(encode_cursor(row)) == (row["created_at"], row["id"])  # type: ignore[arg-type]
    for bad in ("", "nope", "W10", "eyJhIjoxfQ"):
        with pytest.raises(ValueError):
            decode_cursor(bad)


def test_high_priority_scores_ahead_of_older_normal_jobs() -> None:
    now = datetime.now(UTC)
    older_normal = QueuedJob(uuid.uuid4(), "normal", datetime(2020, 1, 1, tzinfo=UTC))
    new_high = QueuedJob(uuid.uuid4(), "high", now)
    assert score(new_high) < score(older_normal)
    assert score(QueuedJob(uuid.uuid4(), "normal", now)) - score(new_high) == HIGH_PRIORITY_LEAD_MS
    assert score(new_high) > 0  # ARQ treats a zero score as "not queued"


def test_keys_carry_the_namespace() -> None:
    keys = Keys("staging")
    job = uuid.uuid4()
    assert keys.queue == "staging:queue" and keys.events_channel == "staging:events"
    assert keys.arq_job_key(job) == f"arq:job:staging:{job}"
    assert keys.job_id_from_arq(keys.arq_job_id(job)) == str(job)
    with pytest.raises(ValueError):
        Keys("production").job_id_from_arq(keys.arq_job_id(job))


def test_namespace_must_be_a_safe_key_prefix() -> None:
    with pytest.raises(ValueError):
        Settings(namespace="has space")
    with pytest.raises(ValueError):
        Settings(namespace="a:b")
    assert Settings(namespace="prod-eu.1").namespace == "prod-eu.1"


class P(BaseModel):
    n: int


def test_registry_requires_a_params_model_and_a_good_name() -> None:
    registry = Registry()

    @job_type("good.name", registry=registry)
    async def good(ctx: JobContext, params: P) -> int:
        return params.n

    jt = registry.get("good.name")
    assert jt is not None and jt.params_model is P and jt.max_attempts == 3

    with pytest.raises(ValueError):
        job_type("Bad Name", registry=registry)
    with pytest.raises(TypeError):

        @job_type("no.model", registry=registry)
        async def no_model(ctx: JobContext, params: dict) -> None:  # type: ignore[type-arg]
            return None

    with pytest.raises(ValueError):

        @job_type("good.name", registry=registry)
        async def twice(ctx: JobContext, params: P) -> int:
            return 0


async def test_progress_reporter_coalesces_and_never_goes_backwards() -> None:
    writes: list[tuple[float, str | None]] = []

    async def write(pct: float, message: str | None) -> None:
        writes.append((pct, message))
        await asyncio.sleep(0.01)

    reporter = ProgressReporter(write, interval_s=0.05)
    for i in range(1, 5001):
        reporter.report(i / 50, f"n={i}")
        if i % 1000 == 0:
            await asyncio.sleep(0.02)
    reporter.report(10, "a late, lower value")  # ignored for the number, kept for the message
    await reporter.close(flush=True)
    assert len(writes) < 20
    assert writes[-1] == (100.0, "a late, lower value")
    assert [w[0] for w in writes] == sorted(w[0] for w in writes)
    for bad in (-1, 101, float("nan"), True, "50"):
        with pytest.raises(ValueError):
            reporter.report(bad)  # type: ignore[arg-type]


def test_job_ids_are_uuid7_ordered_by_time() -> None:
    ids = []
    for _ in range(3):
        ids.append(new_id())
        time.sleep(0.002)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert len({new_id() for _ in range(10_000)}) == 10_000


def test_timestamps_are_utc_with_microseconds_and_z() -> None:
    assert iso(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000Z"
    assert (
        iso(datetime(2026, 1, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))))
        == "2026-01-01T00:03:04.000005Z"
    )
    assert iso(None) is None


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # v4-mapped loopback
        ("::ffff:93.184.216.34", True),
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 around 10.0.0.1
        ("fd00:ec2::254", False),
    ],
)
def test_webhook_destinations_must_be_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_webhook_urls_are_checked_where_they_are_accepted() -> None:
    await check_url("http://93.184.216.34/hook", allow_private=False)
    await check_url("http://127.0.0.1:9000/hook", allow_private=True)
    for url in (
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "https://[::1]/x",
        "http://169.254.169.254/",
    ):
        with pytest.raises(BlockedDestination):
            await check_url(url, allow_private=False)
