"""What a job function gets as `ctx`: who it runs for, a database pool, a logger, `progress()`, and the
results of the jobs it depends on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
from structlog.typing import FilteringBoundLogger

# what `progress()` hands its value to: the worker's coalescing reporter
ProgressSink = Callable[[float, "str | None"], None]


@dataclass
class JobContext:
    """Passed to every job function as its first argument."""

    job_id: UUID
    type: str
    tenant: str
    attempt: int
    max_attempts: int
    db: asyncpg.Pool
    log: FilteringBoundLogger
    _report: ProgressSink = field(repr=False)
    # the result of each job this one depends on (its id → what it returned), read when the job
    # starts; empty for a job without dependencies, which pays nothing for it
    dependency_results: dict[UUID, Any] = field(default_factory=dict)

    def progress(self, pct: float, message: str | None = None) -> None:
        """Report progress (0-100, never decreasing within an attempt) with an optional message.
        Cheap to call often: writes are coalesced."""
        self._report(pct, message)
