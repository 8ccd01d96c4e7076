"""jobwire/webhooks/retry.py: the webhook retry policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from jobwire.config import Settings
from jobwire.webhooks.retry import Response, backoff_s, decide, retry_after_s

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def settings(**overrides: Any) -> Settings:
    return Settings(secret_key="unit-test-secret-key-of-32-characters", **overrides)


def row(attempts: int = 0, schedule_base: int = 0) -> dict[str, Any]:
    return {"attempts": attempts, "schedule_base": schedule_base}


def test_backoff_follows_the_documented_schedule_with_jitter() -> None:
    s = settings()  # 5 s * 3^(n-1), capped at 6 h, ±20 %
    rng = random.Random(1)
    for n, base in [(1, 5), (2, 15), (3, 45), (9, 21600), (10, 21600)]:
        samples = [backoff_s(n, s, rng) for _ in range(200)]
        assert min(samples) >= base * 0.8 and max(samples) <= base * 1.2
        assert max(samples) - min(samples) > base * 0.2  # really jittered


def test_decide_success_gone_retry_and_dead_letter() -> None:
    s = settings(webhook_backoff_max_attempts=3)
    rng = random.Random(2)
    ok = Response(204, None, None, 1.0)
    assert decide(row(), ok, at=NOW, settings=s, rng=rng) == ("delivered", None)
    gone = Response(410, "HTTP 410", None, 1.0)
    assert decide(row(), gone, at=NOW, settings=s, rng=rng) == ("failed", None)
    fail = Response(500, "HTTP 500", None, 1.0)
    status, at = decide(row(attempts=0), fail, at=NOW, settings=s, rng=rng)
    assert status == "pending" and at is not None and 4 <= (at - NOW).total_seconds() <= 6
    assert decide(row(attempts=2), fail, at=NOW, settings=s, rng=rng) == ("failed", None)
    # a redelivery restarts the schedule from where it was made
    assert decide(row(attempts=5, schedule_base=5), fail, at=NOW, settings=s, rng=rng)[0] == "pending"
    no_answer = Response(None, "timeout", None, 10_000.0)
    assert decide(row(), no_answer, at=NOW, settings=s, rng=rng)[0] == "pending"


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_is_honoured_within_delay_and_twice_the_delay(code: int) -> None:
    s = settings()
    rng = random.Random(3)
    for retry_after, lo, hi in [(0.0, 4, 6), (7.0, 7, 7), (3600.0, 8, 12)]:
        _, at = decide(row(), Response(code, "busy", retry_after, 1.0), at=NOW, settings=s, rng=rng)
        assert at is not None and lo <= (at - NOW).total_seconds() <= hi, retry_after
    # other statuses do not get to set the pace
    _, at = decide(row(), Response(500, "x", 3600.0, 1.0), at=NOW, settings=s, rng=rng)
    assert at is not None and (at - NOW).total_seconds() <= 6


def test_retry_after_parsing() -> None:
    assert retry_after_s("120", NOW) == 120
    assert retry_after_s("Thu, 01 Jan 2026 00:00:30 GMT", NOW) == 30
    assert retry_after_s("Wed, 31 Dec 2025 00:00:00 GMT", NOW) == 0  # in the past
    assert retry_after_s("soon", NOW) is None
    assert retry_after_s(None, NOW) is None
    assert retry_after_s("-5", NOW) is None
