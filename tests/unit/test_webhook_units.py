"""The dispatcher's decisions and the signing format, without servers."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import standardwebhooks

from jobwire.config import Settings
from jobwire.webhooks import signing, ssrf
from jobwire.webhooks.retry import Response, backoff_s, decide, retry_after_s
from workers.dispatcher import render_body

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def settings(**overrides: Any) -> Settings:
    return Settings(secret_key="unit-test-secret-key-of-32-characters", **overrides)


def row(attempts: int = 0, schedule_base: int = 0) -> dict[str, Any]:
    return {"attempts": attempts, "schedule_base": schedule_base}


def test_backoff_follows_the_documented_schedule_with_jitter() -> None:
    s = settings()  # 5 s * 3^(n-1), capped at 6 h, ±20 %
    rng = random.Random(1)
    for n, base in [(1, 5), (2, 15), (3, 45), (9, 21600), (10, 21600)]:
        samples = [backoff_s(n, s, rng) for _ in range(200)]
        assert min(samples) >= base * 0.8 and max(samples) <= base * 1.2
        assert max(samples) - min(samples) > base * 0.2  # really jittered


def test_decide_success_gone_retry_and_dead_letter() -> None:
    s = settings(webhook_backoff_max_attempts=3)
    rng = random.Random(2)
    ok = Response(204, None, None, 1.0)
    assert decide(row(), ok, at=NOW, settings=s, rng=rng) == ("delivered", None)
    gone = Response(410, "HTTP 410", None, 1.0)
    assert decide(row(), gone, at=NOW, settings=s, rng=rng) == ("failed", None)
    fail = Response(500, "HTTP 500", None, 1.0)
    status, at = decide(row(attempts=0), fail, at=NOW, settings=s, rng=rng)
    assert status == "pending" and at is not None and 4 <= (at - NOW).total_seconds() <= 6
    assert decide(row(attempts=2), fail, at=NOW, settings=s, rng=rng) == ("failed", None)
    # a redelivery restarts the schedule from where it was made
    assert decide(row(attempts=5, schedule_base=5), fail, at=NOW, settings=s, rng=rng)[0] == "pending"
    no_answer = Response(None, "timeout", None, 10_000.0)
    assert decide(row(), no_answer, at=NOW, settings=s, rng=rng)[0] == "pending"


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_is_honoured_within_delay_and_twice_the_delay(code: int) -> None:
    s = settings()
    rng = random.Random(3)
    for retry_after, lo, hi in [(0.0, 4, 6), (7.0, 7, 7), (3600.0, 8, 12)]:
        _, at = decide(row(), Response(code, "busy", retry_after, 1.0), at=NOW, settings=s, rng=rng)
        assert at is not None and lo <= (at - NOW).total_seconds() <= hi, retry_after
    # other statuses do not get to set the pace
    _, at = decide(row(), Response(500, "x", 3600.0, 1.0), at=NOW, settings=s, rng=rng)
    assert at is not None and (at - NOW).total_seconds() <= 6


def test_retry_after_parsing() -> None:
    assert retry_after_s("120", NOW) == 120
    assert retry_after_s("Thu, 01 Jan 2026 00:00:30 GMT", NOW) == 30
    assert retry_after_s("Wed, 31 Dec 2025 00:00:00 GMT", NOW) == 0  # in the past
    assert retry_after_s("soon", NOW) is None
    assert retry_after_s(None, NOW) is None
    assert retry_after_s("-5", NOW) is None


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


@pytest.mark.parametrize(
    ("url", "blocked"),
    [
        ("http://127.0.0.1/x", True),
        ("http://[::1]/x", True),
        ("http://[::ffff:127.0.0.1]/x", True),
        ("http://[::ffff:a00:1]/x", True),  # ::ffff:10.0.0.1
        ("http://169.254.169.254/", True),
        ("http://100.64.0.1/", True),
        ("http://8.8.8.8/", False),
        ("http://example.com/", False),  # a name: checked by the resolver when dialled
    ],
)
def test_literal_addresses_are_checked_before_dialling(url: str, blocked: bool) -> None:
    assert (ssrf.literal_blocked(url) is not None) is blocked


def test_the_body_is_rendered_from_the_snapshot_the_same_way_every_time() -> None:
    snapshot = {
        "id": "01a20946-4517-7404-9d59-d2cc7ea835d5",
        "tenant": "acme",
        "type": "demo.sleep",
        "status": "completed",
        "progress": 100,
        "message": None,
        "params": {"seconds": 1},
        "priority": "normal",
        "result": {"ok": True},
        "error": None,
        "attempts": 1,
        "max_attempts": 3,
        "webhook_url": "https://example.com/h",
        "created_at": "2026-11-23T16:30:28.123456+00:00",
        "started_at": "2026-11-23T16:30:29+00:00",
        "finished_at": "2026-11-23T16:30:30.5+00:00",
        "updated_at": "2026-11-23T16:30:30.5+00:00",
    }
    body = render_body("job.completed", snapshot)
    assert body == render_body("job.completed", dict(snapshot))
    payload = orjson.loads(body)
    assert payload["type"] == "job.completed"
    assert payload["timestamp"] == "2026-11-23T16:30:30.500000Z"
    assert payload["data"]["started_at"] == "2026-11-23T16:30:29.000000Z"
    assert payload["data"]["events_url"] == f"/v1/jobs/{snapshot['id']}/events"  # no token in webhooks
    assert "tenant" not in payload["data"]
