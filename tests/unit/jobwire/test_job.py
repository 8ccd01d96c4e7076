"""jobwire/job.py: the job representation (timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from jobwire.job import iso


def test_timestamps_are_utc_with_microseconds_and_z() -> None:
    assert iso(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000Z"
    assert (
        iso(datetime(2026, 1, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))))
        == "2026-01-01T00:03:04.000005Z"
    )
    assert iso(None) is None
