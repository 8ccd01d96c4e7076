"""What a job is: its statuses and priorities, and its representation as API.md shows it (the
events that happen to it are `jobwire.events`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from asyncpg import Record


class Status(StrEnum):
    SCHEDULED = "scheduled"  # delayed: waiting for its run_at
    WAITING = "waiting"  # waiting for the jobs it depends on to complete
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
UNFINISHED = frozenset({Status.SCHEDULED, Status.WAITING, Status.PENDING, Status.RUNNING})


class Priority(StrEnum):
    NORMAL = "normal"
    HIGH = "high"


# the last timestamp formatted and its text: the jobs of one group-committed batch share their
# created_at (PostgreSQL's now() is the transaction's), so a batch formats it once, not per job
_last_iso: tuple[datetime, str] = (datetime.min, "")


def iso(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with microseconds and a Z, the one timestamp format of the API."""
    global _last_iso
    if ts is None:
        return None
    last_ts, last_text = _last_iso
    # equal datetimes are the same instant (aware ones compare in UTC), so they have the same text
    if ts == last_ts:
        return last_text
    # isoformat is implemented in C; strftime was a visible share of the submission profile
    text = ts.isoformat(timespec="microseconds")
    if text.endswith("+00:00"):  # what PostgreSQL hands back
        text = text[:-6] + "Z"
    elif ts.tzinfo is None:  # naive: taken as UTC
        text += "Z"
    else:
        text = ts.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"
    _last_iso = (ts, text)
    return text


def job_view(
    row: Record | Mapping[str, Any], *, events_token: str | None, base_url: str = ""
) -> dict[str, Any]:
    """The job representation of API.md, from a `jobs` row; `base_url` (JOBWIRE_PUBLIC_URL) makes
    its URLs absolute."""
    job_id = str(row["id"])
    status_url = f"{base_url}/v1/jobs/{job_id}"
    return {
        "id": job_id,
        "type": row["type"],
        "status": row["status"],
        "progress": float(row["progress"]),
        "message": row["message"],
        "params": row["params"],
        "priority": row["priority"],
        "result": row["result"],
        "error": row["error"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "webhook_url": row["webhook_url"],
        # .get: a delivery's snapshot of a job taken before these columns existed lacks them
        "run_at": iso(row.get("run_at")),
        "expires_at": iso(row.get("expires_at")),
        "schedule_id": None if row.get("schedule_id") is None else str(row.get("schedule_id")),
        "batch_id": None if row.get("batch_id") is None else str(row.get("batch_id")),
        "labels": row.get("labels") or {},
        "depends_on": [str(d) for d in row.get("depends_on") or ()],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "status_url": status_url,
        "events_url": f"{status_url}/events" + (f"?token={events_token}" if events_token else ""),
    }


def error_info(exc: BaseException, *, limit: int = 2000) -> dict[str, str]:
    """The `{"type", "message"}` of a job error. Never a traceback: those go to the worker's log."""
    message = str(exc) or exc.__class__.__name__
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return {"type": exc.__class__.__name__, "message": message}
