"""service/auth.py: the key cache."""

from __future__ import annotations

from unittest import mock

from jobwire import apikeys
from jobwire.apikeys import Principal
from service import auth
from service.auth import KeyCache


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
