"""The event vocabulary: what happens to a job, as clients (SSE, WebSocket), the pub/sub channel
and webhook receivers see it.

An event is built here and nowhere else, whether it comes from a transition that was just committed
(the job row the statement returned) or from a stored `job_events` row being replayed: the two hold
the same values (same statement, same snapshot), so a client cannot tell a replayed event from a
live one.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from asyncpg import Record

from jobwire.job import TERMINAL, iso

# a row as asyncpg returns it, or as a dict (tests, snapshots)
Row = Record | Mapping[str, Any]


class EventType(StrEnum):
    CREATED = "created"
    RELEASED = "released"  # a waiting job's dependencies all completed: it is pending (or scheduled)
    STARTED = "started"
    PROGRESS = "progress"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_EVENTS


# A job's last event is named for the terminal status it reaches.
TERMINAL_EVENTS = frozenset(EventType(status.value) for status in TERMINAL)

# The column of the job an event carries as its `data` (in job_events), and the key clients see it
# under: the result of a completion, the error of a failure or of a failed attempt.
EVENT_DATA = {EventType.COMPLETED: "result", EventType.FAILED: "error", EventType.RETRYING: "error"}

# Webhook event types (`job.<event>`): the job events a receiver can subscribe to. `created` and
# `retrying` are not delivered; the terminal ones are what an endpoint gets by default.
WEBHOOK_EVENTS: dict[EventType, str] = {
    event: f"job.{event.value}" for event in (EventType.STARTED, EventType.PROGRESS, *sorted(TERMINAL_EVENTS))
}
# in the order of EventType (completed, failed, cancelled): an endpoint registered without `events`
# lists them so
DEFAULT_WEBHOOK_EVENTS: tuple[str, ...] = tuple(WEBHOOK_EVENTS[e] for e in EventType if e.terminal)
# A batch's one webhook, when every job in it is terminal (jobwire/batch.py), by its final status;
# `data` is the batch. An endpoint gets them only when it asks for them.
BATCH_WEBHOOK_EVENTS: dict[str, str] = {"completed": "batch.completed", "cancelled": "batch.cancelled"}
# every webhook event name an endpoint may subscribe to
WEBHOOK_EVENT_NAMES: tuple[str, ...] = (*WEBHOOK_EVENTS.values(), *BATCH_WEBHOOK_EVENTS.values())


class Event(TypedDict):
    """One event, as API.md shows it."""

    job_id: str
    seq: int
    type: str
    status: str
    progress: float
    message: str | None
    at: str | None
    result: NotRequired[Any]
    error: NotRequired[Any]


class Message(TypedDict):
    """What the pub/sub channel carries: the event and, for routing, its job's tenant and batch. A
    message without `event` only says that the batch changed (it settled)."""

    tenant: str
    event: NotRequired[Event]
    batch_id: NotRequired[str]


def _event(
    job_id: object,
    seq: int,
    type_: str,
    status: str,
    progress: float,
    message: str | None,
    at: Any,
    data: Any,
) -> Event:
    event: Event = {
        "job_id": str(job_id),
        "seq": seq,
        "type": type_,
        "status": status,
        "progress": float(progress),
        "message": message,
        "at": iso(at),
    }
    key = EVENT_DATA.get(EventType(type_))
    if key == "result":
        event["result"] = data
    elif key == "error":
        event["error"] = data
    return event


def stored_event(row: Row) -> Event:
    """An event from its `job_events` row (job_id, seq, type, status, progress, message, data, at)."""
    return _event(
        row["job_id"], row["seq"], row["type"], row["status"], row["progress"], row["message"], row["at"],
        row["data"],
    )  # fmt: skip


def live_event(job: Row, event: EventType) -> Event:
    """The event a transition just wrote, from the `jobs` row its statement returned."""
    key = EVENT_DATA.get(event)
    return _event(
        job["id"], job["last_seq"], event.value, job["status"], job["progress"], job["message"],
        job["updated_at"], job[key] if key else None,
    )  # fmt: skip


def message(job: Row, event: EventType) -> Message:
    """The pub/sub message of the event a transition just wrote."""
    msg: Message = {"tenant": job["tenant"], "event": live_event(job, event)}
    batch_id = job.get("batch_id")
    if batch_id is not None:
        # the batch's streams re-read its counts (service/batches.py)
        msg["batch_id"] = str(batch_id)
    return msg


def batch_message(tenant: str, batch_id: object) -> Message:
    """The pub/sub message that a batch settled (its streams end with its terminal event)."""
    return {"tenant": tenant, "batch_id": str(batch_id)}
