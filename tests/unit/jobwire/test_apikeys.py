"""jobwire/apikeys.py: the form of a key."""

from __future__ import annotations

import secrets

from jobwire import apikeys


def test_every_key_create_key_makes_is_well_formed() -> None:
    for _ in range(200):
        key = apikeys.KEY_PREFIX + secrets.token_urlsafe(apikeys.KEY_BYTES)
        assert apikeys.well_formed(key)
        assert not apikeys.well_formed(key[:-1]) and not apikeys.well_formed(key + "A")
        assert not apikeys.well_formed(key + "\n") and not apikeys.well_formed("xx" + key[2:])
