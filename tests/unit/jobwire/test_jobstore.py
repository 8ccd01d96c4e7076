"""jobwire/jobstore.py, the parts that need no database: list cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from jobwire.jobstore import decode_cursor, encode_cursor


def test_cursor_round_trips_and_rejects_garbage() -> None:
    row = {"created_at": datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC), "id": uuid.uuid4()}
    assert decode_cursor(encode_cursor(row)) == (row["created_at"], row["id"])  # type: ignore[arg-type]
    for bad in ("", "nope", "W10", "eyJhIjoxfQ"):
        with pytest.raises(ValueError):
            decode_cursor(bad)
