"""Job-scoped stream tokens for `events_url` (browsers cannot set an Authorization header on
EventSource or WebSocket). A token names the API key that minted it, so that the api can refuse it
once that key is revoked.

A token carries an expiry, but its job may run longer than any TTL: past the expiry the api accepts
it still while its job is unfinished, or ended less than a TTL ago (`jobstore.stream_open`). So the
TTL bounds a token's life only once its job is terminal, and a reconnect to a long job's stream
never gets 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import NamedTuple


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Grant(NamedTuple):
    job_id: str
    tenant: str
    key_id: int  # the key that minted it
    expired: bool  # past its expiry: valid only if its job is unfinished or ended within a TTL


class StreamTokens:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._key = hashlib.sha256(b"jobwire stream token\0" + secret.encode()).digest()
        self.ttl_s = ttl_s

    def _sign(self, payload: bytes) -> bytes:
        # hmac.digest is the one-call C path: a token is issued with every job representation
        return hmac.digest(self._key, payload, "sha256")[:18]

    def issue(self, job_id: str, tenant: str, key_id: int, now: float | None = None) -> str:
        # Expiry rounded up to a whole TTL window: the token, and with it the job representation,
        # stays byte-identical within a window, which keeps responses cacheable.
        now = time.time() if now is None else now
        expires = (int(now) // self.ttl_s + 2) * self.ttl_s
        payload = f"{job_id}|{tenant}|{key_id}|{expires}".encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def verify(self, token: str, now: float | None = None) -> Grant | None:
        """What a token signed with this secret grants, else None (the caller still checks that the
        key is not revoked, and the job's state when the token is past its expiry)."""
        try:
            payload_b64, sig_b64 = token.split(".", 1)
            payload, sig = _unb64(payload_b64), _unb64(sig_b64)
            if not hmac.compare_digest(sig, self._sign(payload)):
                return None
            job_id, tenant, key_id, expires = payload.decode().split("|")
            expired = int(expires) < (time.time() if now is None else now)
            return Grant(job_id, tenant, int(key_id), expired)
        except (ValueError, UnicodeDecodeError):
            return None
