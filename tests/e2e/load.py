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
