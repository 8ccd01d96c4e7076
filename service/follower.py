"""Following jobs' events for one client: the rule every live transport (SSE, WebSocket, long-poll)
shares, so that what a client is sent is in seq order, with no duplicate and no missed state change.

A transport registers its subscriber with the hub *before* it reads the backlog from PostgreSQL, so
the backlog and the live events overlap; the follower keeps, per job, the seq of the last event sent
and drops everything at or below it. A live state change that arrives after a gap is preceded by the
events missing in between, read from PostgreSQL (a progress event after a gap is not: the gap is
progress the hub coalesced for a slow client). A follower that stops at the terminal event drops
everything of a job after it, and is `done` when every job it follows has sent one.

The follower reads PostgreSQL only through the `Backlog` it is given, so that each transport can
bound its reads (a WebSocket charges every page after the first to the key's budget) and tests can
pass an in-memory one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from uuid import UUID

from jobwire import jobstore
from jobwire.events import TERMINAL_EVENTS, Event, EventType, stored_event

# Every stored event of the given jobs after their seqs (job id -> seq), in commit order, one page
# (one query) at a time.
Backlog = Callable[[Mapping[str, int]], AsyncIterator[list[Event]]]


def stored_backlog(
    pool: jobstore.Conn,
    scope: str | None,
    *,
    stop: Callable[[], bool],
    pace: Callable[[], Awaitable[None]] | None = None,
) -> Backlog:
    """The backlog in `job_events` of jobs of tenant `scope` (None: any tenant). It ends early once
    `stop()` (the stream is closing: no point reading on); `pace` is awaited before every page after
    the first (a client's budget), so no client reads unboundedly fast."""

    async def read(cursors: Mapping[str, int]) -> AsyncIterator[list[Event]]:
        first = True
        async for page in jobstore.event_pages(pool, {UUID(j): s for j, s in cursors.items()}, scope):
            if not first and pace is not None:
                await pace()
            first = False
            if stop():
                return
            yield [stored_event(row) for row in page]

    return read


class Follower:
    """The jobs one client follows: the seq of the last event sent of each, and which have ended.

    `read` None: gaps are not filled (a long-poll answers with the job's row, which holds every
    event's effect, so it only needs to know that something newer happened). `until_terminal`
    False: a job is followed past its terminal event (a WebSocket sees a retried job go on)."""

    def __init__(
        self,
        read: Backlog | None,
        cursors: Mapping[str, int] | None = None,
        *,
        finished: Iterable[str] = (),
        until_terminal: bool = True,
    ) -> None:
        self._read = read
        self.until_terminal = until_terminal
        self.seqs: dict[str, int] = dict(cursors or {})
        self.finished: set[str] = set(finished) & self.seqs.keys()

    def __contains__(self, job: str) -> bool:
        return job in self.seqs

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def done(self) -> bool:
        """Every followed job has sent its terminal event: the stream can end."""
        return len(self.finished) >= len(self.seqs)

    def follow(self, job: str, seq: int) -> None:
        """Follow `job` from after `seq` on: the client has every event up to it."""
        self.seqs[job] = seq
        self.finished.discard(job)

    def unfollow(self, jobs: Iterable[str]) -> None:
        for job in jobs:
            self.seqs.pop(job, None)
            self.finished.discard(job)

    async def backlog(self, jobs: Iterable[str] | None = None) -> AsyncIterator[Event]:
        """What the stored history holds after the cursors of `jobs` (None: every followed job),
        in commit order, read page by page: what a new subscription starts with, and what a resync
        marker (the hub lost Redis for a while) calls for. Each event counts as sent when it is
        yielded."""
        if self._read is None:
            return
        wanted = self.seqs if jobs is None else {j: self.seqs[j] for j in jobs if j in self.seqs}
        cursors = {j: seq for j, seq in wanted.items() if j not in self.finished}
        if not cursors:
            return
        async for page in self._read(cursors):
            for event in page:
                if self._take(event):
                    yield event

    async def admit(self, event: Event) -> list[Event]:
        """What to send for a live event, in order: nothing (a job not followed, ended, or an event
        sent already), or the event, preceded by the events missing before it when it is a state
        change that follows a gap. All of them count as sent."""
        if not self._new(event):
            return []
        send: list[Event] = []
        job = event["job_id"]
        if event["seq"] > self.seqs[job] + 1 and event["type"] != EventType.PROGRESS:
            send = await self._gap(job, event["seq"])
        if self._take(event):
            send.append(event)
        return send

    async def _gap(self, job: str, before: int) -> list[Event]:
        """The stored events of `job` after its cursor and before seq `before`."""
        missed: list[Event] = []
        if self._read is None:
            return missed
        async for page in self._read({job: self.seqs[job]}):
            for event in page:
                if event["seq"] >= before:
                    return missed
                if self._take(event):
                    missed.append(event)
        return missed

    def _new(self, event: Event) -> bool:
        """Whether `event` is of a followed job that has not ended, and not sent already."""
        job = event["job_id"]
        return job in self.seqs and event["seq"] > self.seqs[job] and job not in self.finished

    def _take(self, event: Event) -> bool:
        """Whether `event` is the next one of its job to send; if so it counts as sent."""
        if not self._new(event):
            return False
        job = event["job_id"]
        self.seqs[job] = event["seq"]
        if self.until_terminal and event["type"] in TERMINAL_EVENTS:
            self.finished.add(job)
        return True
