"""The hub's one tenant check: a subscriber is never handed an event its principal may not see,
whichever routing table (job, tenant, firehose) would deliver it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import orjson

from jobwire.apikeys import Principal
from jobwire.keys import Keys
from service.hub import EventHub, Subscriber

A_JOB = "00000000-0000-0000-0000-00000000000a"
B_JOB = "00000000-0000-0000-0000-00000000000b"
TENANT_B = Principal(tenant="globex", is_admin=False, key_id=2)
TOKEN_B = Principal(tenant="globex", is_admin=False, key_id=2, job_scope=B_JOB)
ADMIN = Principal(tenant="ops", is_admin=True, key_id=3)

# every way the hub routes an event to a subscriber: each registers the subscriber where an event of
# tenant acme's job A would reach it, as a bug or a race in a stream could
ROUTES: dict[str, Callable[[EventHub, Subscriber], None]] = {
    "job": lambda hub, sub: hub.add_jobs(sub, [A_JOB]),
    "tenant": lambda hub, sub: hub.add_tenant(sub, "acme"),
    "firehose": lambda hub, sub: hub.add_tenant(sub, None),
}


def message(tenant: str, job_id: str, seq: int = 2) -> bytes:
    event: dict[str, Any] = {"job_id": job_id, "seq": seq, "type": "progress", "status": "running"}
    return orjson.dumps({"tenant": tenant, "event": event})


def test_every_route_registers_through_a_method_listed_here() -> None:
    # a new routing table must be added to ROUTES above (and so to this test)
    adders = {name for name, _ in inspect.getmembers(EventHub, inspect.isfunction) if name.startswith("add_")}
    assert adders == {"add_jobs", "add_tenant"}


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


def test_a_stream_token_is_handed_only_its_own_job() -> None:
    hub = EventHub("redis://unused", Keys("t"))
    sub = Subscriber(TOKEN_B)
    hub.add_tenant(sub, "globex")
    hub.dispatch(message("globex", "00000000-0000-0000-0000-0000000000cc"))
    hub.dispatch(message("globex", B_JOB))
    assert [item.event["job_id"] for item in sub.drain() if item.event] == [B_JOB]


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
