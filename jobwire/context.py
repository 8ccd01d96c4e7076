"""What a job function gets as `ctx`: who it runs for, a database pool, a logger, and `progress()`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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

    def progress(self, pct: float, message: str | None = None) -> None:
        """Report progress (0-100, never decreasing within an attempt) with an optional message.
        Cheap to call often: writes are coalesced."""
        self._report(pct, message)
