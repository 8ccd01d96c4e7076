"""jobwire/queue.py: queue scores and priorities."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from jobwire.queue import HIGH_PRIORITY_LEAD_MS, QueuedJob, score


def test_high_priority_scores_ahead_of_older_normal_jobs() -> None:
    now = datetime.now(UTC)
    older_normal = QueuedJob(uuid.uuid4(), "normal", datetime(2020, 1, 1, tzinfo=UTC))
    new_high = QueuedJob(uuid.uuid4(), "high", now)
    assert score(new_high) < score(older_normal)
    assert score(QueuedJob(uuid.uuid4(), "normal", now)) - score(new_high) == HIGH_PRIORITY_LEAD_MS
    assert score(new_high) > 0  # ARQ treats a zero score as "not queued"
