"""workers/dispatcher.py, the parts that need no receiver: the delivery body."""

from __future__ import annotations

import orjson

from workers.dispatcher import render_body


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
