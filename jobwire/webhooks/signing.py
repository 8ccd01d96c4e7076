"""Standard Webhooks signing (https://www.standardwebhooks.com/): `whsec_` secrets, the three
`webhook-*` headers, and the stable message id of a job event.

Every attempt is signed afresh with its own timestamp, so a receiver can reject stale replays while
the message id stays the same across attempts and redeliveries (receivers dedupe on it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from jobwire.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the format allows 24-64


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: its base64 payload, decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def message_id(job_id: UUID | str | None, seq: int, batch_id: UUID | str | None = None) -> str:
    """The webhook-id of a job event (or, with `batch_id`, of a batch's one webhook): the same for
    every attempt, redelivery and endpoint."""
    if job_id is None:
        return f"msg_batch_{UUID(str(batch_id)).hex}"
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


# a receiver refuses messages signed longer ago (or further ahead) than this: stale replays
TOLERANCE_S = 5 * 60


def verify(secret: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> Any:
    """Check a delivery as a receiver: one of the `webhook-signature`'s signatures (several during a
    rotation) is this secret's over id, timestamp and body, and the timestamp is within five minutes.
    Returns the parsed JSON body; raises WebhookVerificationError otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (
        lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not msg_id or not stamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        raise WebhookVerificationError("webhook-timestamp is too old or too far ahead (a replay?)")
    try:
        expected = sign(secret, msg_id, timestamp, body).encode()
    except (ValueError, binascii.Error):
        raise WebhookVerificationError("the secret is not a whsec_ secret") from None
    if not any(hmac.compare_digest(expected, s.encode()) for s in signatures.split()):
        raise WebhookVerificationError("no signature matches this secret")
    return json.loads(body)
