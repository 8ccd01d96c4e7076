"""A steady stream of submissions that accounts for every answer, and the checks that every
accepted job was honoured."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx


@dataclass
class Load:
    urls: list[str]
    key: str
    body: dict[str, Any]
    every_s: float = 0.02
    accepted: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    # 503s without a Retry-After, 5xx other than 503, bodies that are not problem documents
    bad: list[str] = field(default_factory=list)
    refused: int = 0  # no answer at all (the api process was down): the client retries elsewhere

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        targets = itertools.cycle(self.urls)
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            while not stop.is_set():
                url = next(targets)
                try:
                    r = await http.post(f"{url}/v1/jobs", json=self.body)
                except httpx.TransportError:
                    self.refused += 1
                else:
                    self.statuses[r.status_code] += 1
                    if r.status_code == 202:
                        self.accepted.append(r.json()["id"])
                    elif r.status_code == 503:
                        if not r.headers.get("Retry-After"):
                            self.bad.append(f"503 without Retry-After: {r.text[:200]}")
                    else:
                        self.bad.append(f"{r.status_code}: {r.text[:200]}")
                await asyncio.sleep(self.every_s)


async def unfinished(database_url: str, job_ids: list[str]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[])"
                " AND status NOT IN ('completed', 'failed', 'cancelled')",
                [uuid.UUID(j) for j in job_ids],
            )
        )
    finally:
        await conn.close()


async def account(database_url: str, job_ids: list[str]) -> dict[str, Any]:
    """What became of the accepted jobs: every one must exist, be terminal, and have exactly one
    terminal event and a gapless event sequence."""
    conn = await asyncpg.connect(database_url)
    try:
        ids = [uuid.UUID(j) for j in job_ids]
        statuses = Counter(
            {
                r["status"]: r["n"]
                for r in await conn.fetch(
                    "SELECT status, count(*) AS n FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY status", ids
                )
            }
        )
        terminal_events = await conn.fetch(
            "SELECT job_id, count(*) AS n FROM job_events WHERE job_id = ANY($1::uuid[])"
            " AND type IN ('completed', 'failed', 'cancelled') GROUP BY job_id",
            ids,
        )
        gaps = await conn.fetchval(
            "SELECT count(*) FROM (SELECT job_id, count(*) AS n, max(seq) AS top FROM job_events"
            " WHERE job_id = ANY($1::uuid[]) GROUP BY job_id) s WHERE n <> top",
            ids,
        )
    finally:
        await conn.close()
    return {
        "accepted": len(ids),
        "stored": sum(statuses.values()),
        "statuses": dict(statuses),
        "one_terminal_event": sum(1 for r in terminal_events if r["n"] == 1),
        "several_terminal_events": sum(1 for r in terminal_events if r["n"] > 1),
        "gapped": int(gaps),
    }


TERMINAL_TYPES = frozenset({"completed", "failed", "cancelled"})


def assert_all_honoured(report: dict[str, Any]) -> None:
    n = report["accepted"]
    assert report["stored"] == n, report
    assert report["one_terminal_event"] == n and report["several_terminal_events"] == 0, report
    assert report["gapped"] == 0, report


async def all_finished(database_url: str, job_ids: list[str], timeout: float) -> None:
    from tests.conftest import eventually

    async def check() -> bool:
        return await unfinished(database_url, job_ids) == 0

    try:
        await eventually(check, timeout=timeout, interval=0.5, what=f"{len(job_ids)} accepted jobs to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; some still unfinished: {await stuck(database_url, job_ids)}") from None


async def stuck(database_url: str, job_ids: list[str], limit: int = 5) -> list[str]:
    """A few unfinished jobs of these, each with its status, attempts and latest events: what a
    failed wait for them to finish reports."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT j.id, j.status, j.attempts, j.updated_at, (SELECT array_agg(e.type || ' ' ||"
            " coalesce(e.message, '') || ' ' || e.at::text ORDER BY e.seq DESC) FROM (SELECT * FROM"
            " job_events WHERE job_id = j.id ORDER BY seq DESC LIMIT 4) e) AS latest FROM jobs j"
            " WHERE j.id = ANY($1::uuid[]) AND j.status NOT IN ('completed', 'failed', 'cancelled')"
            " LIMIT $2",
            [uuid.UUID(j) for j in job_ids],
            limit,
        )
    finally:
        await conn.close()
    return [f"{r['id']} {r['status']} attempts={r['attempts']} latest={r['latest']}" for r in rows]


@dataclass
class Follower:
    """An SSE client following jobs to their ends across whatever befalls the apis: when its stream
    drops (an api killed, cut off or failing over) it reconnects to the next api with Last-Event-ID,
    as EventSource would. `events[job id]` is every event it was sent, in order."""

    urls: list[str]
    key: str
    job_ids: list[str]
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reconnects: int = 0
    # a stream silent this long (no event, no heartbeat) counts as dead: reconnect elsewhere
    read_timeout_s: float = 30

    def done(self) -> bool:
        return all(self.events.get(j) and self.events[j][-1]["type"] in TERMINAL_TYPES for j in self.job_ids)

    async def run(self) -> None:
        import json

        from httpx_sse import aconnect_sse

        path = (
            f"/v1/jobs/{self.job_ids[0]}/events"
            if len(self.job_ids) == 1
            else "/v1/events?jobs=" + ",".join(self.job_ids)
        )
        last: str | None = None
        targets = itertools.cycle(self.urls)
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=httpx.Timeout(10, read=self.read_timeout_s),
        ) as http:
            while not self.done():
                headers = {"Last-Event-ID": last} if last else {}
                try:
                    async with aconnect_sse(http, "GET", next(targets) + path, headers=headers) as source:
                        status = source.response.status_code
                        if status == 204:
                            return
                        # a 503 (that api cannot reach a backend right now): try the next one
                        if status != 200 and status != 503:
                            raise AssertionError(f"stream answered {status}")
                        async for sse in source.aiter_sse():
                            if sse.data:
                                event = json.loads(sse.data)
                                self.events.setdefault(event["job_id"], []).append(event)
                                last = sse.id
                except (httpx.TransportError, httpx.RemoteProtocolError):
                    pass
                if not self.done():
                    self.reconnects += 1
                    await asyncio.sleep(0.2)

    def assert_complete(self) -> None:
        """Every job's stream: seq 1, 2, … with no gap and no repeat, from `created` to one terminal
        event."""
        for job_id in self.job_ids:
            seen = self.events.get(job_id, [])
            assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1)), (job_id, seen)
            assert seen[0]["type"] == "created" and seen[-1]["type"] in TERMINAL_TYPES, (job_id, seen)


async def assert_webhooks_honoured(
    database_url: str, accepted: list[str], received: list[Any], secret: str, timeout: float
) -> int:
    """Every delivery the jobs owe is delivered, the receiver got each one (by its webhook-id), the
    accepted jobs each owe theirs, and every request verifies with the reference library
    (standardwebhooks) under the tenant's signing secret. Returns how many were owed."""
    import standardwebhooks

    from jobwire.webhooks import signing
    from tests.conftest import eventually

    conn = await asyncpg.connect(database_url)
    try:

        async def delivered() -> bool:
            return bool(
                await conn.fetchval("SELECT count(*) FROM deliveries WHERE status <> 'delivered'") == 0
            )

        await eventually(delivered, timeout=timeout, interval=0.5, what="every owed webhook to be delivered")
        owed = {
            signing.message_id(r["job_id"], r["seq"])
            for r in await conn.fetch("SELECT job_id, seq FROM deliveries")
        }
        accepted_owed = await conn.fetchval(
            "SELECT count(DISTINCT job_id) FROM deliveries WHERE job_id = ANY($1::uuid[])",
            [uuid.UUID(j) for j in accepted],
        )
    finally:
        await conn.close()
    assert accepted_owed == len(accepted)
    assert {r.webhook_id for r in received} == owed
    verifier = standardwebhooks.Webhook(secret)
    for r in received:
        verifier.verify(r.body, r.headers)
    return len(owed)
