"""The key cache, the failed-authentication limiter, the key format and the secret key's length."""

from __future__ import annotations

import secrets
from unittest import mock

import pytest
from pydantic import ValidationError

from jobwire import apikeys
from jobwire.apikeys import Principal
from jobwire.config import SECRET_KEY_MIN_CHARS, Settings
from service import auth
from service.auth import KeyCache
from service.limits import FailureLimiter
from service.problems import Problem


def principal(n: int) -> Principal:
    return Principal(tenant=f"t{n}", is_admin=False, key_id=n)


def digest(n: int) -> bytes:
    return apikeys.hash_key(f"key-{n}")


def test_a_full_key_cache_drops_the_least_recently_used_not_everything() -> None:
    cache = KeyCache(size=3)
    for n in range(3):
        cache.put(digest(n), principal(n))
    assert cache.get(digest(0)) == (True, principal(0))  # key 0 used again: key 1 is now the oldest
    cache.put(digest(3), principal(3))
    assert cache.get(digest(1)) == (False, None)
    for n in (0, 2, 3):
        assert cache.get(digest(n)) == (True, principal(n))


def test_refused_keys_cannot_evict_the_keys_in_use() -> None:
    cache = KeyCache(size=2, negative_size=2)
    cache.put(digest(0), principal(0))
    for n in range(100, 200):
        cache.put(digest(n), None)
    assert cache.get(digest(0)) == (True, principal(0))
    assert cache.get(digest(199)) == (True, None)  # a refusal is remembered too
    assert cache.get(digest(100)) == (False, None)
    # a key refused, then created: the new answer replaces the refusal
    cache.put(digest(199), principal(199))
    assert cache.get(digest(199)) == (True, principal(199))


def test_key_cache_entries_expire() -> None:
    cache = KeyCache()
    with mock.patch("service.ttlcache.time.monotonic", return_value=1000.0):
        cache.put(digest(1), principal(1))
        cache.put(digest(2), None)
    with mock.patch("service.ttlcache.time.monotonic", return_value=1000.0 + auth.NEGATIVE_TTL_S + 0.1):
        assert cache.get(digest(1)) == (True, principal(1))
        assert cache.get(digest(2)) == (False, None)
    with mock.patch("service.ttlcache.time.monotonic", return_value=1000.0 + auth.CACHE_TTL_S + 0.1):
        assert cache.get(digest(1)) == (False, None)


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


def test_every_key_create_key_makes_is_well_formed() -> None:
    for _ in range(200):
        key = apikeys.KEY_PREFIX + secrets.token_urlsafe(apikeys.KEY_BYTES)
        assert apikeys.well_formed(key)
        assert not apikeys.well_formed(key[:-1]) and not apikeys.well_formed(key + "A")
        assert not apikeys.well_formed(key + "\n") and not apikeys.well_formed("xx" + key[2:])


def test_a_short_secret_key_is_refused_with_a_clear_error() -> None:
    short = "s" * (SECRET_KEY_MIN_CHARS - 1)
    with pytest.raises(ValidationError) as refused:
        Settings(secret_key=short)
    message = str(refused.value)
    assert "JOBWIRE_SECRET_KEY" in message and f"at least {SECRET_KEY_MIN_CHARS}" in message
    assert Settings(secret_key="s" * SECRET_KEY_MIN_CHARS).secret_key == "s" * SECRET_KEY_MIN_CHARS
    assert Settings(secret_key="").secret_key is None  # unset: `dev` generates one
    # what the error tells users to run makes a key long enough
    assert len(secrets.token_urlsafe(32)) >= SECRET_KEY_MIN_CHARS
