"""The webhook retry policy, pure and small: how long to wait after a failed attempt (exponential
backoff with jitter), how far a receiver's `Retry-After` is honoured, and what an attempt's answer
means for its delivery (delivered, retried later, or failed for good)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import asyncpg

from jobwire.config import Settings


def backoff_s(n: int, settings: Settings, rng: random.Random) -> float:
    """Delay after the n-th failed attempt of a schedule: min(MAX, BASE * FACTOR^(n-1)), ±20 %."""
    base = min(
        settings.webhook_backoff_max_s,
        settings.webhook_backoff_base_s * settings.webhook_backoff_factor ** (n - 1),
    )
    return base * rng.uniform(0.8, 1.2)


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date), None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Response:
    status_code: int | None
    error: str | None
    retry_after: float | None
    duration_ms: float


def decide(
    row: asyncpg.Record | dict[str, Any],
    response: Response,
    *,
    at: datetime,
    settings: Settings,
    rng: random.Random,
) -> tuple[str, datetime | None]:
    """The delivery's next status after an attempt, and when to try again (pending only)."""
    code = response.status_code
    if code is not None and 200 <= code < 300:
        return "delivered", None
    if code == 410:
        return "failed", None  # gone: the receiver asks never to be called again
    n = row["attempts"] + 1 - row["schedule_base"]  # this attempt's number within its schedule
    if n >= settings.webhook_backoff_max_attempts:
        return "failed", None  # dead letter: visible in the API, redeliverable
    delay = backoff_s(n, settings, rng)
    if code in (429, 503) and response.retry_after is not None:
        # honoured, but within [delay, 2 * delay]: a receiver can slow us down, not stall a delivery
        delay = min(max(response.retry_after, delay), 2 * delay)
    return "pending", at + timedelta(seconds=delay)
