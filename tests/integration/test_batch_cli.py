"""Batches from the command line (`jobwire batch …`) and from the Python client, against a real api
and worker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from jobwire import ApiError, AsyncClient, Client
from jobwire.config import Settings
from tests.conftest import Api, make_settings, new_key
from tests.integration.test_cli import client_env, run
from workers.worker import WorkerService


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, batch_settle_s=0.05)


def jsonl(path: Path, jobs: list[object]) -> str:
    path.write_text("\n".join(json.dumps(j) for j in jobs) + "\n\n")
    return str(path)


async def test_batch_submit_wait_follows_the_batch_to_its_end(
    api: Api, settings: Settings, worker: WorkerService, tmp_path: Path
) -> None:
    env = client_env(api, await new_key(settings.database_url, "acme"))
    jobs: list[object] = [{"type": "demo.sleep", "params": {"seconds": 0.3, "steps": 3}} for _ in range(4)]
    jobs.append({"type": "demo.sleep", "params": {"seconds": 0}, "depends_on": [0, 1]})
    file = jsonl(tmp_path / "jobs.jsonl", jobs)
    out = await asyncio.to_thread(
        run, ["batch", "submit", file, "--wait", "--json", "--label", "team=data"], env
    )
    assert out.returncode == 0, out.stderr
    batch = json.loads(out.stdout)
    assert batch["status"] == "completed" and batch["counts"]["completed"] == 5
    assert batch["labels"] == {"team": "data"} and batch["progress"] == 100

    # a failed job: exit 1, and its count
    failing = jsonl(
        tmp_path / "failing.jsonl", [{"type": "demo.sleep", "params": {"seconds": 0}}, {"type": "demo.fail"}]
    )
    out = await asyncio.to_thread(run, ["batch", "submit", failing, "--wait"], env)
    assert out.returncode == 1
    assert "failed 1" in out.stderr


async def test_batch_submit_explains_bad_input(api: Api, settings: Settings, tmp_path: Path) -> None:
    env = client_env(api, await new_key(settings.database_url, "acme"))
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"type": "demo.sleep"}\nnot json\n')
    out = await asyncio.to_thread(run, ["batch", "submit", str(bad_line)], env)
    assert out.returncode == 2 and f"{bad_line}:2: not JSON" in out.stderr
    invalid = jsonl(
        tmp_path / "invalid.jsonl",
        [{"type": "demo.sleep"}, {"type": "demo.sleep", "params": {"seconds": -1}}],
    )
    out = await asyncio.to_thread(run, ["batch", "submit", invalid], env)
    assert out.returncode == 2 and "params do not match" in out.stderr
    out = await asyncio.to_thread(run, ["batch", "submit", str(tmp_path / "missing.jsonl")], env)
    assert out.returncode == 2 and "cannot read" in out.stderr
    out = await asyncio.to_thread(
        run, ["batch", "submit", jsonl(tmp_path / "one.jsonl", [{"type": "demo.sleep"}])], env
    )
    assert out.returncode == 0 and len(out.stdout.strip()) == 36  # the batch id alone on stdout
    cancelled = await asyncio.to_thread(run, ["batch", "cancel", out.stdout.strip(), "--json"], env)
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["status"] == "cancelled"


async def test_the_python_clients_speak_batches(api: Api, settings: Settings, worker: WorkerService) -> None:
    key = await new_key(settings.database_url, "acme")
    with Client(api.url, key) as client:
        batch = await asyncio.to_thread(
            client.submit_batch,
            [{"type": "demo.sleep", "params": {"seconds": 0}}] * 3,
            labels={"k": "v"},
            idempotency_key="once",
        )
        again = await asyncio.to_thread(
            client.submit_batch,
            [{"type": "demo.sleep", "params": {"seconds": 0}}] * 3,
            labels={"k": "v"},
            idempotency_key="once",
        )
        assert again.id == batch.id and batch.total == 3
        listed = await asyncio.to_thread(client.list, batch_id=batch.id)
        assert {j.batch_id for j in listed.items} == {batch.id} and len(listed.items) == 3
        assert [b.id for b in (await asyncio.to_thread(client.list_batches)).items] == [batch.id]
        with pytest.raises(ApiError) as refused:
            await asyncio.to_thread(client.submit_batch, [{"type": "demo.sleep", "params": {"seconds": "x"}}])
        assert refused.value.status == 422
        assert refused.value.errors and refused.value.errors[0]["loc"][:3] == ["body", "jobs", 0]
    async with AsyncClient(api.url, key) as aclient:
        for _ in range(100):
            got = await aclient.get_batch(batch.id)
            if got.finished_at:
                break
            await asyncio.sleep(0.1)
        assert got.status == "completed" and got.counts.completed == 3
        blocked = await aclient.submit_batch([{"type": "test.block", "params": {"seconds": 30}}])
        cancelled = await aclient.cancel_batch(blocked.id)
        assert cancelled.status == "cancelled"
        assert [b.id for b in (await aclient.list_batches(limit=1)).items] == [blocked.id]
