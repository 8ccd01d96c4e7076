"""service/limits.py: the failed-authentication limiter."""

from __future__ import annotations

from unittest import mock

import pytest

from service.limits import FailureLimiter
from service.problems import Problem


def test_failure_limiter_refuses_past_the_limit_until_the_window_ends() -> None:
    limiter = FailureLimiter(limit=3, window_s=60)
    now = 5000.0
    with mock.patch("service.limits.time.monotonic", side_effect=lambda: now):
        for _ in range(3):
            limiter.check("1.2.3.4")
            limiter.failed("1.2.3.4")
        with pytest.raises(Problem) as refused:
            limiter.check("1.2.3.4")
        assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "60"
        limiter.check("1.2.3.5")  # another address
        now += 30
        with pytest.raises(Problem) as refused:
            limiter.check("1.2.3.4")
        assert refused.value.headers["Retry-After"] == "30"
        now += 30.5
        limiter.check("1.2.3.4")  # the window is over
        limiter.failed("1.2.3.4")
        limiter.refund("1.2.3.4")
        for _ in range(2):
            limiter.failed("1.2.3.4")
        limiter.check("1.2.3.4")  # 2 failures counted: the refunded one is not


def test_failure_limiter_table_is_bounded() -> None:
    limiter = FailureLimiter(limit=1, window_s=60, max_addresses=100)
    for n in range(1000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._windows) == 100
    with pytest.raises(Problem):
        limiter.check("10.0.3.231")  # the newest are kept


def test_failure_limiter_off() -> None:
    limiter = FailureLimiter(limit=0, window_s=60)
    for _ in range(100):
        limiter.failed("1.2.3.4")
    limiter.check("1.2.3.4")
