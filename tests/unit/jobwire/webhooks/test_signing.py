"""jobwire/webhooks/signing.py: Standard Webhooks signatures, checked against the reference library."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import standardwebhooks

from jobwire import WebhookVerificationError, verify_webhook
from jobwire.webhooks import signing


def test_secrets_and_signatures_match_the_reference_library() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and 24 <= len(signing.secret_key(secret)) <= 64
    body = b'{"type":"job.completed"}'
    ts = int(datetime.now(UTC).timestamp())
    msg_id = signing.message_id("01a20946-4517-7404-9d59-d2cc7ea835d5", 7)
    assert msg_id == "msg_01a2094645177404" + "9d59d2cc7ea835d5_7"
    headers = signing.headers([secret], msg_id, ts, body)
    assert standardwebhooks.Webhook(secret).verify(body, headers) == {"type": "job.completed"}
    ours = signing.sign(secret, msg_id, ts, body)
    theirs = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
    assert ours == theirs
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    both = signing.headers([other, secret], msg_id, ts, body)
    assert len(both["webhook-signature"].split(" ")) == 2
    assert standardwebhooks.Webhook(secret).verify(body, both)


def test_verify_webhook_accepts_what_the_reference_library_signs_and_nothing_else() -> None:
    secret, other = signing.new_secret(), signing.new_secret()
    body = b'{"type":"job.failed","data":{"id":"x"}}'
    now = datetime.now(UTC)
    msg_id = "msg_1"
    theirs = standardwebhooks.Webhook(secret).sign(msg_id, now, body.decode())
    headers = {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": theirs,
    }
    assert verify_webhook(secret, body, headers) == {"type": "job.failed", "data": {"id": "x"}}
    # a rotation: the old and the new secret's signatures side by side, either secret verifies
    rotated = {
        **headers,
        "Webhook-Signature": f"{standardwebhooks.Webhook(other).sign(msg_id, now, body.decode())} {theirs}",
    }
    assert verify_webhook(secret, body, rotated) and verify_webhook(other, body, rotated)
    stale = int(now.timestamp()) - 6 * 60
    old = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(stale, UTC), body.decode())
    refused = [
        (secret, body + b" ", headers),  # a tampered body
        (signing.new_secret(), body, headers),  # another secret
        (secret, body, {**headers, "Webhook-Timestamp": str(stale), "Webhook-Signature": old}),  # stale
        (secret, body, {k: v for k, v in headers.items() if k != "Webhook-Id"}),
        (secret, body, {**headers, "Webhook-Timestamp": "soon"}),
        ("not a secret!", body, headers),
    ]
    for key, payload, hdrs in refused:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(key, payload, hdrs)
        # the reference library refuses the same messages
        with pytest.raises((standardwebhooks.WebhookVerificationError, ValueError)):
            standardwebhooks.Webhook(key).verify(payload, hdrs)
