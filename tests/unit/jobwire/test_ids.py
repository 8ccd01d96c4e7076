"""jobwire/ids.py: UUIDv7 job ids."""

from __future__ import annotations

import time
import uuid

from jobwire.ids import new_id


def test_job_ids_are_uuid7_ordered_by_time() -> None:
    ids = []
    for _ in range(3):
        ids.append(new_id())
        time.sleep(0.002)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert len({new_id() for _ in range(10_000)}) == 10_000
