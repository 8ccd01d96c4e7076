"""Standard Webhooks signing (https://www.standardwebhooks.com/): `whsec_` secrets, the three
`webhook-*` headers, and the stable message id of a job event.

Every attempt is signed afresh with its own timestamp, so a receiver can reject stale replays while
the message id stays the same across attempts and redeliveries (receivers dedupe on it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from uuid import UUID

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the format allows 24-64


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: its base64 payload, decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def message_id(job_id: UUID | str, seq: int) -> str:
    """The webhook-id of a job event: the same for every attempt, redelivery and endpoint."""
    return f"msg_{UUID(str(job_id)).hex}_{seq}"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(secret_key(secret), signed, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt; one signature per valid secret (both during a rotation)."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
    }
