"""The follower on its own: the stored history is an in-memory list read through the same `Backlog`
interface the streams give it over PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from jobwire.events import Event
from service.follower import Backlog, Follower

A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"
STATUS = {
    "created": "pending",
    "started": "running",
    "progress": "running",
    "retrying": "pending",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


def ev(job: str, seq: int, type_: str) -> Event:
    return {
        "job_id": job,
        "seq": seq,
        "type": type_,
        "status": STATUS[type_],
        "progress": 0.0,
        "message": None,
        "at": None,
    }


def history(job: str, *types: str) -> list[Event]:
    return [ev(job, seq, t) for seq, t in enumerate(types, start=1)]


class Store:
    """The stored events, in commit order, and every read made of them (the cursors asked for)."""

    def __init__(self, events: list[Event], page: int = 2) -> None:
        self.events = events
        self.page = page
        self.reads: list[dict[str, int]] = []

    def backlog(self) -> Backlog:
        async def read(cursors: Mapping[str, int]) -> AsyncIterator[list[Event]]:
            self.reads.append(dict(cursors))
            rows = [e for e in self.events if e["job_id"] in cursors and e["seq"] > cursors[e["job_id"]]]
            for start in range(0, len(rows), self.page):
                yield rows[start : start + self.page]

        return read


async def replay(follower: Follower) -> list[tuple[str, int]]:
    return [(e["job_id"], e["seq"]) for e in [e async for e in follower.backlog()]]


def seqs(events: list[Event]) -> list[int]:
    return [e["seq"] for e in events]


async def test_the_backlog_is_read_after_the_cursor_in_pages_and_live_duplicates_are_dropped() -> None:
    stored = history(A, "created", "started", "progress", "progress", "progress")
    store = Store(stored, page=2)
    follower = Follower(store.backlog(), {A: 1})
    assert await replay(follower) == [(A, 2), (A, 3), (A, 4), (A, 5)]
    assert store.reads == [{A: 1}] and follower.seqs == {A: 5}
    # the subscription began before the read: what arrives live now is the same events again
    for event in stored:
        assert await follower.admit(event) == []
    live = ev(A, 6, "progress")
    assert await follower.admit(live) == [live]
    assert await follower.admit(live) == []


async def test_a_gap_before_a_state_change_is_filled_from_the_store_in_order() -> None:
    stored = history(A, "created", "started", "progress", "progress", "progress", "completed", "retrying")
    store = Store(stored, page=1)
    follower = Follower(store.backlog(), {A: 2})
    live = ev(A, 6, "completed")  # 3, 4 and 5 never arrived live (coalesced, or a lost publish)
    sent = await follower.admit(live)
    assert seqs(sent) == [3, 4, 5, 6]
    assert sent[-1] is live  # the live event itself, with the hub's shared encoding
    assert store.reads == [{A: 2}]
    assert follower.seqs[A] == 6 and follower.done


async def test_a_progress_event_after_a_gap_reads_nothing() -> None:
    store = Store(history(A, "created", "started", "progress", "progress", "progress"))
    follower = Follower(store.backlog(), {A: 2})
    live = ev(A, 5, "progress")  # the progress between was coalesced by the hub: not worth a read
    assert await follower.admit(live) == [live]
    assert store.reads == [] and follower.seqs[A] == 5
    assert await follower.admit(ev(A, 4, "progress")) == []  # late: older than what was sent


async def test_a_gap_read_stops_at_the_live_event() -> None:
    stored = history(A, "created", "started", "progress", "completed", "retrying", "started")
    follower = Follower(Store(stored, page=10).backlog(), {A: 1}, until_terminal=False)
    live = ev(A, 4, "completed")
    assert seqs(await follower.admit(live)) == [2, 3, 4]
    # what was stored after it comes live, in its turn
    assert follower.seqs[A] == 4
    assert seqs(await follower.admit(stored[5])) == [5, 6]


async def test_the_terminal_event_ends_its_job_and_nothing_after_it_is_sent() -> None:
    follower = Follower(Store(history(A, "created", "started")).backlog(), {A: 0})
    assert await replay(follower) == [(A, 1), (A, 2)]
    assert follower.finished == set()
    failed = ev(A, 3, "failed")
    assert await follower.admit(failed) == [failed]
    assert follower.done and follower.finished == {A}
    assert await follower.admit(ev(A, 4, "retrying")) == []  # a retry after the end: not this stream's
    assert await replay(follower) == []


async def test_a_terminal_event_inside_a_gap_ends_the_job_there() -> None:
    stored = history(A, "created", "started", "failed", "retrying", "started")
    follower = Follower(Store(stored).backlog(), {A: 2})
    assert seqs(await follower.admit(stored[4])) == [3]
    assert follower.done


async def test_a_follower_past_the_terminal_event_keeps_following_a_retried_job() -> None:
    follower = Follower(Store([]).backlog(), {A: 3}, until_terminal=False)
    assert seqs(await follower.admit(ev(A, 4, "failed"))) == [4]
    assert seqs(await follower.admit(ev(A, 5, "retrying"))) == [5]
    assert not follower.finished


async def test_jobs_ended_before_the_stream_make_it_done_at_once() -> None:
    follower = Follower(Store(history(A, "created", "completed")).backlog(), {A: 2}, finished=[A])
    assert follower.done
    assert await replay(follower) == []
    assert not Follower(None, {A: 2}).done


async def test_a_resync_re_reads_only_what_was_not_sent() -> None:
    stored = history(A, "created", "started", "progress", "progress")
    store = Store(stored)
    follower = Follower(store.backlog(), {A: 0})
    assert len(await replay(follower)) == 4
    assert seqs(await follower.admit(ev(A, 5, "progress"))) == [5]
    # the hub lost Redis: 6 and 7 were published to nobody, and are only in the store
    stored += [ev(A, 6, "progress"), ev(A, 7, "completed")]
    assert await replay(follower) == [(A, 6), (A, 7)]
    assert store.reads[-1] == {A: 5}
    assert follower.done
    assert await follower.admit(stored[-1]) == []  # it also arrives live once Redis is back


async def test_each_job_keeps_its_own_cursor() -> None:
    # commit order interleaves the jobs
    stored = [ev(A, 1, "created"), ev(B, 1, "created"), ev(A, 2, "started"), ev(B, 2, "started")]
    stored += [ev(B, 3, "progress"), ev(A, 3, "completed")]
    store = Store(stored, page=3)
    follower = Follower(store.backlog(), {A: 1, B: 2})
    assert await replay(follower) == [(A, 2), (B, 3), (A, 3)]
    assert store.reads == [{A: 1, B: 2}]
    assert follower.finished == {A} and not follower.done
    # a gap of one job reads that job alone
    stored += [ev(B, 4, "progress"), ev(B, 5, "completed")]
    assert seqs(await follower.admit(stored[-1])) == [4, 5]
    assert store.reads[-1] == {B: 3}
    assert follower.done


async def test_a_resync_of_some_jobs_skips_those_that_ended() -> None:
    store = Store([ev(A, 1, "created"), ev(B, 1, "created")])
    follower = Follower(store.backlog(), {A: 1, B: 0}, finished=[A])
    assert [(e["job_id"], e["seq"]) async for e in follower.backlog([A, B])] == [(B, 1)]
    assert store.reads == [{B: 0}]


async def test_jobs_are_followed_and_unfollowed() -> None:
    follower = Follower(Store([]).backlog(), until_terminal=False)
    assert await follower.admit(ev(A, 1, "created")) == []  # not followed
    follower.follow(A, 1)
    assert A in follower and len(follower) == 1
    assert seqs(await follower.admit(ev(A, 2, "started"))) == [2]
    follower.unfollow([A])
    assert await follower.admit(ev(A, 3, "progress")) == []
    assert len(follower) == 0


async def test_without_a_backlog_a_gap_is_not_read_and_the_event_says_the_job_moved() -> None:
    follower = Follower(None, {A: 2})  # the long-poll: it re-reads the job's row instead
    assert await follower.admit(ev(A, 2, "started")) == []  # the row read holds it
    live = ev(A, 5, "completed")
    assert await follower.admit(live) == [live]
    follower.follow(A, 7)  # the row read again, further on
    assert await follower.admit(ev(A, 6, "retrying")) == []
    assert await replay(follower) == []
