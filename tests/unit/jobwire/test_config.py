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
