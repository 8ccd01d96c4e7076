"""What a batch is: its statuses, its counts, its representation and its events, as API.md ("Many
jobs at once") shows them. A batch holds no counters of its own: its counts and progress are read
from its jobs (jobstore.batch_tallies) until it settles, then kept (batchstore.settle)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from asyncpg import Record

from jobwire.events import BATCH_WEBHOOK_EVENTS
from jobwire.job import iso

# the job statuses a batch counts, in the order its `counts` lists them ('waiting': a job whose
# dependencies have not all completed)
COUNTED = ("scheduled", "waiting", "pending", "running", "completed", "failed", "cancelled")
FINISHED = frozenset({"completed", "failed", "cancelled"})

# at most this many jobs in one batch (API.md)
MAX_JOBS = 1000


class BatchStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every job is terminal (its counts say how many failed)
    CANCELLED = "cancelled"  # POST /v1/batches/{id}/cancel


# the webhook event of a settled batch, by its final status
WEBHOOK_EVENTS = {
    status: BATCH_WEBHOOK_EVENTS[status.value] for status in (BatchStatus.COMPLETED, BatchStatus.CANCELLED)
}


@dataclass(slots=True)
class Tally:
    """A batch's jobs as read now: how many of each status, the sum of their progress (what each
    reached: a completed job 100, a failed or cancelled one where it stopped) and of their
    `last_seq` (it grows with every event of every job of the batch, so it versions the batch's live
    state)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    progress_sum: float = 0.0
    version: int = 0

    def add(self, status: str, n: int, progress_sum: float, seq_sum: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + n
        self.progress_sum += progress_sum
        self.version += seq_sum

    @property
    def unfinished(self) -> int:
        return sum(n for s, n in self.counts.items() if s not in FINISHED)


def progress_of(total: int, progress_sum: float) -> float:
    return round(min(100.0, progress_sum / total), 2) if total else 100.0


def batch_view(
    row: Record | Mapping[str, Any],
    tally: Tally | None,
    *,
    base_url: str = "",
    events_token: str | None = None,
) -> dict[str, Any]:
    """The batch representation of API.md from a `batches` row and, unless it has settled (its
    final counts are in the row), the tally of its jobs read now."""
    batch_id = str(row["id"])
    if row["final_counts"] is not None:
        counts = dict(row["final_counts"])
        progress = float(row["final_progress"])
    else:
        tally = tally or Tally()
        counts = dict(tally.counts)
        progress = progress_of(row["total"], tally.progress_sum)
    return {
        "id": batch_id,
        "status": row["status"],
        "total": row["total"],
        "counts": {s: int(counts.get(s, 0)) for s in COUNTED},
        "progress": progress,
        "labels": row["labels"] or {},
        "webhook_url": row["webhook_url"],
        "created_at": iso(row["created_at"]),
        "finished_at": iso(row["finished_at"]),
        "jobs_url": f"{base_url}/v1/jobs?batch_id={batch_id}",
        "events_url": f"{base_url}/v1/batches/{batch_id}/events"
        + (f"?token={events_token}" if events_token else ""),
    }


def batch_event(view: Mapping[str, Any], type_: str, at: Any = None) -> dict[str, Any]:
    """A batch stream event: `progress` (counts and progress, coalesced) or the terminal
    `completed`/`cancelled` with the final counts."""
    return {
        "batch_id": view["id"],
        "type": type_,
        "status": view["status"],
        "total": view["total"],
        "counts": view["counts"],
        "progress": view["progress"],
        "at": iso(at),
    }
