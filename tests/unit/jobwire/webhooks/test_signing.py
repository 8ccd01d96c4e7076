"""jobwire/webhooks/signing.py: Standard Webhooks signatures, checked against the reference library."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import standardwebhooks

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
