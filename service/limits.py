"""Per-key limits of the api: a request rate (token bucket) and open streams. Both are kept in the
process: N api processes allow N times the configured figures, and a limit costs no round trip."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from jobwire.apikeys import Principal
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


class FailureLimiter:
    """Failed authentications per client address: past `limit` failures in `window_s`, the address
    is answered 429 until its window ends, before any key is looked up. A fixed window per address
    (its first failure starts it) is enough here: the point is to make guessing keys slow and to
    keep a flood of bad keys off the database, not to shape traffic."""

    def __init__(self, limit: int, window_s: float, max_addresses: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        # address -> (window end, failures in it); oldest window first, so the table is bounded by
        # dropping the front: a flood of addresses forgets the oldest, never grows without end
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def check(self, address: str) -> None:
        """Raise a 429 (with Retry-After) while `address` is over the limit."""
        if self.limit <= 0:
            return
        entry = self._windows.get(address)
        if entry is None:
            return
        ends, failures = entry
        now = time.monotonic()
        if ends <= now:
            del self._windows[address]
            return
        if failures >= self.limit:
            wait_s = max(1, math.ceil(ends - now))
            raise Problem(
                429,
                f"too many failed authentications from this address: at most {self.limit} in "
                f"{self.window_s:g} s; try again in {wait_s} s",
                slug="auth-rate-limited",
                headers={"Retry-After": str(wait_s)},
            )

    def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        entry = self._windows.get(address)
        if entry is None or entry[0] <= now:
            self._windows.pop(address, None)
            self._windows[address] = (now + self.window_s, 1)
            self._evict(now)
        else:
            self._windows[address] = (entry[0], entry[1] + 1)

    def refund(self, address: str) -> None:
        """Take back one failure counted ahead of an outcome that turned out a success."""
        entry = self._windows.get(address)
        if entry is not None and entry[1] > 0:
            self._windows[address] = (entry[0], entry[1] - 1)

    def _evict(self, now: float) -> None:
        # windows are kept in the order they started, so the expired ones are at the front
        while self._windows:
            address, (ends, _) = next(iter(self._windows.items()))
            if ends > now and len(self._windows) <= self.max_addresses:
                break
            del self._windows[address]
