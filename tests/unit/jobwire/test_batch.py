"""The batch representation and its tally: counts, progress (the mean of its jobs'), version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from jobwire.batch import COUNTED, Tally, batch_event, batch_view, progress_of
from service import schemas

BATCH = UUID("01900000-0000-7000-8000-000000000001")


def row(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": BATCH,
        "tenant": "acme",
        "status": "running",
        "total": 4,
        "labels": {"customer": "acme"},
        "webhook_url": None,
        "created_at": datetime(2026, 12, 1, 12, tzinfo=UTC),
        "finished_at": None,
        "final_counts": None,
        "final_progress": None,
    }
    return {**base, **extra}


def test_a_tally_counts_every_status_and_versions_the_batch() -> None:
    t = Tally()
    assert list(t.counts) == list(COUNTED) and t.unfinished == 0
    t.add("running", 2, 80.0, 6)
    t.add("completed", 1, 100.0, 3)
    t.add("waiting", 1, 0.0, 1)
    assert t.counts["running"] == 2 and t.unfinished == 3 and t.version == 10
    assert progress_of(4, t.progress_sum) == 45.0
    assert progress_of(0, 0) == 100.0


def test_the_view_reads_a_live_tally_until_the_batch_settles() -> None:
    t = Tally()
    t.add("pending", 4, 0.0, 4)
    live = batch_view(row(), t, base_url="https://jobs.example.com", events_token="tok")
    schemas.Batch.model_validate(live)
    assert live["counts"]["pending"] == 4 and live["progress"] == 0
    assert live["jobs_url"] == f"https://jobs.example.com/v1/jobs?batch_id={BATCH}"
    assert live["events_url"] == f"https://jobs.example.com/v1/batches/{BATCH}/events?token=tok"
    final = {"completed": 3, "failed": 1}
    done = batch_view(
        row(status="completed", final_counts=final, final_progress=100.0, finished_at=datetime.now(UTC)), t
    )
    assert done["counts"] == {**dict.fromkeys(COUNTED, 0), **final} and done["progress"] == 100.0
    event = batch_event(done, "completed", datetime.now(UTC))
    schemas.BatchEvent.model_validate(event)
    assert event["type"] == "completed" and event["counts"] == done["counts"]
