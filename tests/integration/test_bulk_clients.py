"""Bulk actions and the label filter from the Python client and from `jobwire jobs cancel|retry`
(a real process against the api)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import httpx

from jobwire.client import AsyncClient
from jobwire.config import Settings
from tests.conftest import ROOT, Api, new_key
from tests.integration.test_cli import JOBWIRE, env_for


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOBWIRE, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


async def _statuses(c: AsyncClient, label: dict[str, str]) -> list[str]:
    return [j.status for j in (await c.list(labels=label, limit=200)).items]


async def test_python_client_lists_by_label_and_acts_in_bulk(api: Api, settings: Settings) -> None:
    key = await new_key(settings.database_url, "acme")
    async with AsyncClient(api.url, key) as c:
        tagged = [
            await c.submit("demo.sleep", {"seconds": 1}, labels={"run": "7", "env": "ci"}) for _ in range(3)
        ]
        other = await c.submit("demo.sleep", {"seconds": 1}, labels={"run": "8"})
        assert tagged[0].labels == {"run": "7", "env": "ci"}
        page = await c.list(labels={"run": "7", "env": "ci"})
        assert [j.id for j in page.items] == [j.id for j in reversed(tagged)]

        counted = await c.bulk("cancel", labels={"run": "7"}, dry_run=True)
        assert (counted.matched, counted.changed) == (3, 3)
        done = await c.bulk("cancel", labels={"run": "7"}, status=["pending"])
        assert (done.matched, done.changed) == (3, 3)
        assert await _statuses(c, {"run": "7"}) == ["cancelled"] * 3
        again = await c.bulk("retry", labels={"run": "7"})
        assert (again.matched, again.changed) == (3, 3)
        assert await _statuses(c, {"run": "7"}) == ["pending"] * 3
        assert (await c.get(other.id)).status == "pending"


async def test_cli_jobs_cancel_counts_asks_and_acts(api: Api, settings: Settings) -> None:
    key = await new_key(settings.database_url, "acme")
    env = env_for(settings.database_url, settings.namespace, JOBWIRE_URL=api.url, JOBWIRE_API_KEY=key)
    sub = await asyncio.to_thread(
        run, ["submit", "demo.sleep", "--param", "seconds=1", "--label", "customer=acme", "--json"], env
    )
    assert sub.returncode == 0, sub.stderr
    assert json.loads(sub.stdout)["labels"] == {"customer": "acme"}
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}) as http:
        for customer in ("acme", "acme", "globex"):
            body = {"type": "demo.sleep", "params": {}, "labels": {"customer": customer}}
            assert (await http.post("/v1/jobs", json=body)).status_code == 202

        async def statuses(customer: str) -> list[str]:
            r = await http.get("/v1/jobs", params={"label": f"customer:{customer}"})
            return [j["status"] for j in r.json()["items"]]

        dry = await asyncio.to_thread(run, ["jobs", "cancel", "--label", "customer=acme", "--dry-run"], env)
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.strip() == "3 matching, 3 would be cancelled"
        # asked first: anything but yes changes nothing
        no = await asyncio.to_thread(run, ["jobs", "cancel", "--label", "customer=acme"], env, "n\n")
        assert no.returncode == 1
        assert "3 jobs match; cancel 3 of them? [y/N]" in no.stderr and "nothing changed" in no.stderr
        assert await statuses("acme") == ["pending"] * 3
        yes = await asyncio.to_thread(run, ["jobs", "cancel", "--label", "customer=acme"], env, "y\n")
        assert yes.returncode == 0, yes.stderr
        assert yes.stdout.strip() == "3 matching, 3 cancelled"
        assert await statuses("acme") == ["cancelled"] * 3
        assert await statuses("globex") == ["pending"]

        retried = await asyncio.to_thread(
            run,
            ["jobs", "retry", "--label", "customer=acme", "--status", "cancelled", "--yes", "--json"],
            env,
        )
        assert retried.returncode == 0, retried.stderr
        assert json.loads(retried.stdout) == {"matched": 3, "changed": 3, "dry_run": False}
        assert await statuses("acme") == ["pending"] * 3

    # the api's refusals are printed, without a traceback
    empty = await asyncio.to_thread(run, ["jobs", "cancel", "--yes"], env)
    assert empty.returncode == 2 and "all" in empty.stderr and "Traceback" not in empty.stderr
    bad: dict[str, Any] = {"args": ["jobs", "cancel", "--label", "customer"], "env": env}
    malformed = await asyncio.to_thread(run, **bad)
    assert malformed.returncode == 2 and "key=value" in malformed.stderr
