"""jobwire/config.py: settings that are refused."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from jobwire.config import SECRET_KEY_MIN_CHARS, Settings


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


def test_cors_origins_are_read_comma_separated_as_browsers_write_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBWIRE_CORS_ORIGINS", " HTTPS://App.Example.com:443/ ,http://localhost:3000,*")
    assert Settings().cors_origins == ["https://app.example.com", "http://localhost:3000", "*"]
    for bad in (
        "app.example.com",
        "https://app.example.com/path",
        "ftp://x.example",
        "https://x.example:99999",
    ):
        with pytest.raises(ValidationError, match="not an origin"):
            Settings(cors_origins=[bad])


def test_public_url_is_an_http_base_without_trailing_slash() -> None:
    assert Settings(public_url="https://jobs.example.com/").public_url == "https://jobs.example.com"
    assert Settings(public_url="").public_url is None
    for bad in ("jobs.example.com", "https://jobs.example.com/?x=1"):
        with pytest.raises(ValidationError):
            Settings(public_url=bad)


def test_sentinels_are_host_port_pairs_and_anything_else_is_refused() -> None:
    s = Settings(redis_sentinels="10.0.0.1:26379, sentinel-b:26380,[::1]:26381")
    assert s.sentinel_addresses == [("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381)]
    assert Settings().sentinel_addresses == []
    for bad in ("10.0.0.1", "10.0.0.1:", ":26379", "host:port", "host:70000", "a:1,b"):
        with pytest.raises(ValidationError) as refused:
            Settings(redis_sentinels=bad)
        assert "host:port" in str(refused.value), bad


def test_a_direct_url_other_than_the_database_url_means_a_pooler_in_front() -> None:
    plain = Settings(database_url="postgresql://db/jobwire")
    assert plain.session_database_url == "postgresql://db/jobwire" and not plain.behind_pooler
    same = Settings(database_url="postgresql://db/jobwire", database_direct_url="postgresql://db/jobwire")
    assert not same.behind_pooler
    pooled = Settings(
        database_url="postgresql://bouncer:6432/jobwire", database_direct_url="postgresql://db:5432/jobwire"
    )
    assert pooled.behind_pooler and pooled.session_database_url == "postgresql://db:5432/jobwire"
