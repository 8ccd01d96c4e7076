"""Per-key limits of the api: a request rate (token bucket) and open streams. Both are kept in the
process: N api processes allow N times the configured figures, and a limit costs no round trip."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from common.apikeys import Principal
from service.problems import Problem

# buckets of keys not seen for this long are dropped, so the table stays the size of the live keys
IDLE_S = 300.0


class RateLimiter:
    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = float(burst)
        # key -> (tokens, last refill); a full bucket is the default for a key not seen yet
        self._buckets: dict[object, tuple[float, float]] = {}
        self._next_sweep = time.monotonic() + IDLE_S

    def take(self, key: object) -> float:
        """Take one token for `key`: 0.0 when taken, else the seconds until the next one is due."""
        if self.per_s <= 0:
            return 0.0
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_s)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.per_s
        self._buckets[key] = (tokens - 1, now)
        if now > self._next_sweep:
            self._sweep(now)
        return 0.0

    def check(self, key: object) -> None:
        """Take one token for `key`, or raise a 429 saying when the next one is due."""
        wait_s = self.take(key)
        if wait_s:
            raise self.refusal(wait_s)

    async def wait(self, key: object) -> None:
        """Take one token for `key`, waiting for it when the bucket is empty (work a client already
        asked for, such as the further pages of a replay, is paced by its budget, not refused)."""
        # no event to wait on: the bucket refills with time, and another op may take the token first
        while wait_s := self.take(key):  # noqa: ASYNC110
            await asyncio.sleep(wait_s)

    def refusal(self, wait_s: float) -> Problem:
        retry_s = max(1, math.ceil(wait_s))
        return Problem(
            429,
            f"too many requests for this API key: at most {self.per_s:g} a second "
            f"(bursts of {self.burst:g}); try again in {retry_s} s",
            slug="rate-limited",
            headers={"Retry-After": str(retry_s)},
        )

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + IDLE_S
        # a bucket idle this long has refilled: dropping it changes nothing
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < IDLE_S}


class StreamLimiter:
    """Connections a key holds open: SSE streams, WebSockets and long-polls."""

    def __init__(self, max_per_key: int) -> None:
        self.max_per_key = max_per_key
        self._open: dict[object, int] = {}

    @contextmanager
    def hold(self, principal: Principal) -> Iterator[None]:
        """One open stream for the principal's key while the block runs; 429 past the cap."""
        with self.hold_if_free(principal) as held:
            if not held:
                raise Problem(
                    429,
                    f"this API key already has {self.max_per_key} streams open (SSE, WebSocket or"
                    " long-poll); close some first",
                    slug="too-many-streams",
                    headers={"Retry-After": "5"},
                )
            yield

    @contextmanager
    def hold_if_free(self, principal: Principal) -> Iterator[bool]:
        """Like `hold`, but yields False instead of refusing when the key is at its cap."""
        key = limit_key(principal)
        if self._open.get(key, 0) >= self.max_per_key:
            yield False
            return
        self._open[key] = self._open.get(key, 0) + 1
        try:
            yield True
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]


def limit_key(principal: Principal) -> object:
    """API keys are limited one by one; a job-scoped stream token by the key that minted it and its
    job, so that one tenant's tokens do not share (and cannot exhaust) one budget."""
    if principal.job_scope is not None:
        return ("token", principal.key_id, principal.job_scope)
    return principal.key_id
