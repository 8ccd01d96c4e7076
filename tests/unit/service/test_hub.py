"""The fan-out hub without Redis: routing by job, tenant and firehose, the tenant check every
subscriber makes, and each subscriber's bounded queue (coalescing, overflow, markers), fed through
`dispatch` as the pub/sub connection feeds it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from uuid import UUID

import orjson

from jobwire.apikeys import Principal
from jobwire.events import Event, Message
from jobwire.keys import Keys
from service.hub import BATCH_CHANGED, HEARTBEAT, RESYNC, EventHub, Item, Subscriber

A_JOB = "00000000-0000-0000-0000-00000000000a"
B_JOB = "00000000-0000-0000-0000-00000000000b"
TENANT_A = Principal(tenant="acme", is_admin=False, key_id=1)
TENANT_B = Principal(tenant="globex", is_admin=False, key_id=2)
TOKEN_B = Principal(tenant="globex", is_admin=False, key_id=2, job_scope=B_JOB)
ADMIN = Principal(tenant="ops", is_admin=True, key_id=3)

# every way the hub routes an event to a subscriber: each registers the subscriber where an event of
# tenant acme's job A would reach it, as a bug or a race in a stream could
A_BATCH = "00000000-0000-0000-0000-0000000000ba"
ROUTES: dict[str, Callable[[EventHub, Subscriber], None]] = {
    "job": lambda hub, sub: hub.add_jobs(sub, [A_JOB]),
    "tenant": lambda hub, sub: hub.add_tenant(sub, "acme"),
    "firehose": lambda hub, sub: hub.add_tenant(sub, None),
    # a batch's followers are poked (BATCH_CHANGED) by its jobs' events, theirs only
    "batch": lambda hub, sub: hub.add_batches(sub, [A_BATCH]),
}


def event(job_id: str, seq: int = 2, type_: str = "progress") -> Event:
    status = {"progress": "running", "started": "running", "completed": "completed"}[type_]
    return {
        "job_id": job_id,
        "seq": seq,
        "type": type_,
        "status": status,
        "progress": 0.0,
        "message": None,
        "at": None,
    }


def message(tenant: str, job_id: str, seq: int = 2, type_: str = "progress") -> bytes:
    payload: Message = {"tenant": tenant, "event": event(job_id, seq, type_), "batch_id": A_BATCH}
    return orjson.dumps(payload)


async def queued(sub: Subscriber) -> list[Item]:
    """Everything waiting in the subscriber's queue, in order."""
    items = []
    while (item := await sub.get(timeout=0)) is not None:
        items.append(item)
    return items


async def seqs(sub: Subscriber) -> list[tuple[str, int]]:
    return [(i.event["type"], i.event["seq"]) for i in await queued(sub) if i.event is not None]


def test_every_route_registers_through_a_method_listed_here() -> None:
    # a new routing table must be added to ROUTES above (and so to this test)
    adders = {name for name, _ in inspect.getmembers(EventHub, inspect.isfunction) if name.startswith("add_")}
    assert adders == {"add_batches", "add_jobs", "add_tenant"}


def test_a_subscriber_cannot_be_made_without_a_principal() -> None:
    parameter = inspect.signature(Subscriber).parameters["principal"]
    assert parameter.default is inspect.Parameter.empty


def test_no_route_hands_a_subscriber_another_tenants_event() -> None:
    for route, register in ROUTES.items():
        hub = EventHub("redis://unused", Keys("t"))
        for principal in (TENANT_B, TOKEN_B):
            sub = Subscriber(principal)
            register(hub, sub)
            hub.dispatch(message("acme", A_JOB))
            hub.dispatch(orjson.dumps([orjson.loads(message("acme", A_JOB, 3))]))  # a batch too
            assert len(sub) == 0, f"{route}: {principal} was handed acme's event"


async def test_a_stream_token_is_handed_only_its_own_job() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    sub = Subscriber(TOKEN_B)
    hub.add_tenant(sub, "globex")
    hub.dispatch(message("globex", "00000000-0000-0000-0000-0000000000cc"))
    hub.dispatch(message("globex", B_JOB))
    assert [item.event["job_id"] for item in await queued(sub) if item.event] == [B_JOB]


def test_own_and_admin_events_still_arrive_on_every_route() -> None:
    for route, register in ROUTES.items():
        hub = EventHub("redis://unused", Keys("t"))
        owner = Subscriber(Principal(tenant="acme", is_admin=False, key_id=1))
        admin = Subscriber(ADMIN)
        register(hub, owner)
        register(hub, admin)
        hub.dispatch(message("acme", A_JOB))
        assert len(owner) == 1 and len(admin) == 1, route


def test_revoking_a_key_closes_its_streams_subscribed_or_not() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    idle = Subscriber(TENANT_B)
    hub.attach(idle)  # a WebSocket that has subscribed to nothing yet
    token = Subscriber(TOKEN_B)
    hub.attach(token)
    hub.add_jobs(token, [B_JOB])
    other = Subscriber(ADMIN)
    hub.attach(other)
    assert hub.close_keys({TENANT_B.key_id}) == 2
    assert idle.closed and idle.revoked and token.closed and token.revoked
    assert not other.closed


# ---- routing -----------------------------------------------------------------------------------


async def test_events_are_routed_by_job_by_tenant_and_to_the_firehose() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    job_a, feed_a, feed_b, firehose = (Subscriber(p) for p in (TENANT_A, TENANT_A, TENANT_B, ADMIN))
    hub.add_jobs(job_a, [A_JOB])
    hub.add_tenant(feed_a, "acme")
    hub.add_tenant(feed_b, "globex")
    hub.add_tenant(firehose, None)
    other_a_job = "00000000-0000-0000-0000-0000000000ac"
    hub.dispatch(message("acme", A_JOB, 2))
    hub.dispatch(message("acme", other_a_job, 3))
    hub.dispatch(orjson.dumps([orjson.loads(message("globex", B_JOB, 4))]))
    assert [(i.event["job_id"], i.tenant) for i in await queued(job_a) if i.event] == [(A_JOB, "acme")]
    assert [i.event["seq"] for i in await queued(feed_a) if i.event] == [2, 3]
    assert [i.event["seq"] for i in await queued(feed_b) if i.event] == [4]
    assert [i.event["seq"] for i in await queued(firehose) if i.event] == [2, 3, 4]
    assert hub.subscriber_count() == 4


async def test_an_event_is_encoded_once_for_all_its_subscribers() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    subs = [Subscriber(TENANT_A) for _ in range(3)]
    for sub in subs:
        hub.add_jobs(sub, [A_JOB])
    hub.dispatch(message("acme", A_JOB, 5))
    items = [(await queued(sub))[0] for sub in subs]
    encoded = {id(item.encoded) for item in items}
    assert len(encoded) == 1
    assert items[0].encoded is not None and orjson.loads(items[0].encoded.json)["seq"] == 5


async def test_a_malformed_message_is_ignored() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    sub = Subscriber(ADMIN)
    hub.add_tenant(sub, None)
    for raw in (b"not json", b'{"tenant": "acme"}', b"[1, 2]"):
        hub.dispatch(raw)
    hub.dispatch(message("acme", A_JOB))
    assert len(await queued(sub)) == 1


async def test_a_detached_subscriber_gets_nothing_more() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    sub = Subscriber(TENANT_A)
    with hub.subscription(sub, jobs=[A_JOB]):
        hub.add_tenant(sub, "acme")
        assert hub.subscriber_count() == 1
    hub.dispatch(message("acme", A_JOB))
    assert len(sub) == 0 and not sub.jobs and not sub.tenants
    assert hub.subscriber_count() == 0
    # unsubscribing a job leaves the tenant feed, and the other way round
    hub.add_jobs(sub, [A_JOB])
    hub.add_tenant(sub, "acme")
    hub.remove_jobs(sub, [A_JOB])
    hub.dispatch(message("acme", A_JOB, 3))
    hub.remove_tenants(sub)
    hub.dispatch(message("acme", A_JOB, 4))
    assert await seqs(sub) == [("progress", 3)]


# ---- one subscriber's queue --------------------------------------------------------------------


def deliver(sub: Subscriber, *events: Event) -> None:
    """Hand `events` to `sub` as the hub does (through a tenant feed)."""
    hub = EventHub("redis://unused", Keys("t"))
    hub.add_tenant(sub, "acme")
    for e in events:
        hub.dispatch(orjson.dumps({"tenant": "acme", "event": e}))


async def test_progress_is_coalesced_per_job_only_past_the_soft_limit() -> None:
    sub = Subscriber(TENANT_A, soft_limit=3)
    deliver(sub, event(A_JOB, 1, "started"), event(A_JOB, 2), event(A_JOB, 3))
    assert len(sub) == 3  # under the soft limit, every progress event waits
    other = "00000000-0000-0000-0000-0000000000ac"
    deliver(sub, event(A_JOB, 4), event(A_JOB, 5), event(other, 7), event(other, 8))
    # the newest progress of each job replaces the one still queued, in its place
    assert await seqs(sub) == [("started", 1), ("progress", 2), ("progress", 5), ("progress", 8)]


async def test_terminal_and_state_events_are_never_coalesced_or_dropped() -> None:
    sub = Subscriber(TENANT_A, soft_limit=1, hard_limit=100)
    deliver(sub, event(A_JOB, 1, "started"), event(A_JOB, 2), event(A_JOB, 3))
    deliver(sub, event(A_JOB, 4, "completed"), event(A_JOB, 5))
    # 3 replaced 2; a progress after the terminal event does not replace it
    assert await seqs(sub) == [("started", 1), ("progress", 3), ("completed", 4), ("progress", 5)]


async def test_a_subscriber_past_the_hard_limit_overflows_and_is_handed_nothing() -> None:
    sub = Subscriber(TENANT_A, soft_limit=1, hard_limit=3)
    deliver(sub, *(event(A_JOB, seq, "started") for seq in range(1, 4)))
    assert (len(sub), sub.overflowed) == (3, False)
    deliver(sub, event(A_JOB, 4, "completed"))
    assert sub.overflowed and len(sub) == 0
    deliver(sub, event(A_JOB, 5, "completed"))
    assert len(sub) == 0
    assert await sub.get(timeout=None) is None  # at once: the stream closes the client


async def test_progress_is_coalesced_rather_than_overflowing() -> None:
    sub = Subscriber(TENANT_A, soft_limit=2, hard_limit=3)
    deliver(sub, event(A_JOB, 1, "started"), *(event(A_JOB, seq) for seq in range(2, 50)))
    assert not sub.overflowed
    assert await seqs(sub) == [("started", 1), ("progress", 49)]


async def test_an_event_already_taken_is_never_rewritten_by_coalescing() -> None:
    sub = Subscriber(TENANT_A, soft_limit=0)  # coalesce whatever is queued
    deliver(sub, event(A_JOB, 1))
    taken = await sub.get(timeout=0)
    deliver(sub, event(A_JOB, 2))
    assert taken is not None and taken.event is not None and taken.event["seq"] == 1
    assert await seqs(sub) == [("progress", 2)]


async def test_resync_markers_queue_once_behind_the_events() -> None:
    sub = Subscriber(TENANT_A)
    deliver(sub, event(A_JOB, 1, "started"))
    sub.resync()
    sub.resync()  # one re-read covers both
    items = await queued(sub)
    assert [item.event["seq"] if item.event else item for item in items] == [1, RESYNC]
    sub.heartbeat()
    sub.resync()
    assert await queued(sub) == [HEARTBEAT, RESYNC]


async def test_get_waits_for_an_event_and_times_out_without_one() -> None:
    sub = Subscriber(TENANT_A)
    assert await sub.get(timeout=0.01) is None
    waiting = asyncio.ensure_future(sub.get(timeout=None))
    await asyncio.sleep(0)
    assert not waiting.done()
    deliver(sub, event(A_JOB, 1, "started"))
    item = await asyncio.wait_for(waiting, 1)
    assert item is not None and item.event is not None and item.event["seq"] == 1
    sub.close()
    assert await sub.get(timeout=None) is None


async def test_the_audit_resyncs_a_job_whose_newest_events_never_came_live() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    follower, other = Subscriber(TENANT_A), Subscriber(TENANT_A)
    hub.add_jobs(follower, [A_JOB])
    hub.add_jobs(other, [B_JOB])
    hub.dispatch(message("acme", A_JOB, 1, "started"))
    hub.dispatch(message("acme", B_JOB, 1, "started"))
    await queued(follower)
    await queued(other)
    a, b = UUID(A_JOB), UUID(B_JOB)
    hub.resync_behind({a: 1, b: 1})  # all sent: nothing to do
    # seq 2 of job A is committed; the first audit may have raced its live message: wait one more
    hub.resync_behind({a: 2, b: 1})
    assert await queued(follower) == []
    hub.dispatch(message("acme", A_JOB, 2))  # it was in flight after all
    hub.resync_behind({a: 2, b: 1})
    assert [item.event["seq"] if item.event else item for item in await queued(follower)] == [2]
    # seq 3 is committed and never published (its worker lost Redis): two audits, one re-read
    hub.resync_behind({a: 3, b: 1})
    hub.resync_behind({a: 3, b: 1})
    assert await queued(follower) == [RESYNC]
    assert await queued(other) == []
    hub.resync_behind({a: 3, b: 1})
    assert await queued(follower) == []  # caught up: no further re-reads


async def test_a_batch_follower_gets_one_marker_for_many_events_and_none_of_other_batches() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    sub = Subscriber(Principal(tenant="acme", is_admin=False, key_id=1))
    hub.add_batches(sub, [A_BATCH])
    for seq in range(2, 10):
        hub.dispatch(message("acme", A_JOB, seq))
    other: Message = {"tenant": "acme", "batch_id": "00000000-0000-0000-0000-0000000000bb"}
    hub.dispatch(orjson.dumps(other))
    assert await queued(sub) == [BATCH_CHANGED]
    # a settled batch's message has no event: it pokes its followers all the same
    settled: Message = {"tenant": "acme", "batch_id": A_BATCH}
    hub.dispatch(orjson.dumps(settled))
    assert await queued(sub) == [BATCH_CHANGED]
    hub.detach(sub)
    hub.dispatch(orjson.dumps(settled))
    assert await queued(sub) == []
