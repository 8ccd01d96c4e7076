"""jobwire/queue.py: queue scores and priorities."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from jobwire.queue import HIGH_PRIORITY_LEAD_MS, QueuedJob, promote_at, queued, score


def test_high_priority_scores_ahead_of_older_normal_jobs() -> None:
    now = datetime.now(UTC)
    older_normal = QueuedJob(uuid.uuid4(), "normal", datetime(2020, 1, 1, tzinfo=UTC))
    new_high = QueuedJob(uuid.uuid4(), "high", now)
    assert score(new_high) < score(older_normal)
    assert score(QueuedJob(uuid.uuid4(), "normal", now)) - score(new_high) == HIGH_PRIORITY_LEAD_MS
    assert score(new_high) > 0  # ARQ treats a zero score as "not queued"


def test_a_delayed_job_is_scored_at_its_time_rounded_up_whatever_its_priority() -> None:
    now = datetime(2026, 1, 1, 9, tzinfo=UTC)
    due = datetime(2026, 1, 1, 10, 0, 0, 400, tzinfo=UTC)  # 0.4 ms past the hour
    normal = QueuedJob(uuid.uuid4(), "normal", now, due)
    high = QueuedJob(uuid.uuid4(), "high", now, due)
    # never popped before its time: not even the sub-millisecond part
    assert score(normal, now) == score(high, now) == int(due.timestamp() * 1000) + 1
    # only the high one is promoted into the high past when it comes due
    assert promote_at(normal, now) is None
    assert promote_at(high, now) == score(high, now)
    # once due (a reconciler re-enqueueing it late), it is scored as an immediate job of its priority
    later = datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert score(high, later) == score(normal, later) - HIGH_PRIORITY_LEAD_MS
    assert promote_at(high, later) is None


def test_a_job_row_is_queued_at_its_run_at_only_while_scheduled() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    due = datetime(2026, 1, 2, tzinfo=UTC)
    row = {
        "id": uuid.uuid4(),
        "priority": "normal",
        "created_at": created,
        "status": "scheduled",
        "run_at": due,
    }
    assert queued(row).run_at == due
    # a retried job keeps its old run_at on the row, but runs now
    assert queued({**row, "status": "pending"}).run_at is None
