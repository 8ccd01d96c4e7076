"""The `jobwire` command as a user runs it: migrate, keys create, and `dev` serving a job from
submission to completion."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from jobwire.config import Settings
from jobwire.registry import Registry
from tests.conftest import (
    REDIS_URL,
    ROOT,
    Api,
    db_url,
    delete_namespace,
    drop_database,
    free_port,
    http_ready,
    make_settings,
    new_key,
)
from workers.worker import WorkerService

JOBWIRE = [sys.executable, "-m", "jobwire"]


@pytest.fixture
async def fresh_db() -> AsyncIterator[str]:
    """A database name that does not exist yet: `migrate` must create it."""
    name = f"jobwire_cli_{uuid.uuid4().hex[:10]}"
    yield db_url(name)
    await drop_database(name)


def env_for(database_url: str, namespace: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env.update(
        JOBWIRE_DATABASE_URL=database_url,
        JOBWIRE_REDIS_URL=REDIS_URL,
        JOBWIRE_NAMESPACE=namespace,
        JOBWIRE_LOG_FORMAT="json",
        **extra,
    )
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBWIRE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def test_migrate_creates_the_database_and_is_safe_twice(fresh_db: str) -> None:
    env = env_for(fresh_db, "cli")
    first = await asyncio.to_thread(run, ["migrate"], env)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    second = await asyncio.to_thread(run, ["migrate"], env)
    assert second.returncode == 0, second.stderr
    conn = await asyncpg.connect(fresh_db)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    finally:
        await conn.close()
    assert {"jobs", "job_events", "api_keys", "idempotency_keys"} <= tables


async def test_migrate_goes_to_the_direct_url_never_through_the_pooler(fresh_db: str) -> None:
    # JOBWIRE_DATABASE_URL names a pooler that is not there: migrate must not need it
    env = env_for("postgresql://postgres@127.0.0.1:1/jobwire", "cli", JOBWIRE_DATABASE_DIRECT_URL=fresh_db)
    out = await asyncio.to_thread(run, ["migrate"], env)
    assert out.returncode == 0, out.stderr
    assert f"database {fresh_db.rsplit('/', 1)[1]}: created and schema applied" in out.stdout
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await conn.fetchval("SELECT to_regclass('jobs') IS NOT NULL")
    finally:
        await conn.close()


async def test_keys_create_prints_the_key_alone_on_the_last_line(fresh_db: str) -> None:
    env = env_for(fresh_db, "cli")
    assert (await asyncio.to_thread(run, ["migrate"], env)).returncode == 0
    out = await asyncio.to_thread(run, ["keys", "create", "--tenant", "acme", "--admin"], env)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("jw_") and " " not in key
    conn = await asyncpg.connect(fresh_db)
    try:
        row = await conn.fetchrow("SELECT tenant, is_admin, key_hash FROM api_keys")
    finally:
        await conn.close()
    assert row is not None and row["tenant"] == "acme" and row["is_admin"]
    assert key.encode() not in bytes(row["key_hash"])  # stored hashed
    bad = await asyncio.to_thread(run, ["keys", "create", "--tenant", "no spaces"], env)
    assert bad.returncode == 2 and "invalid tenant" in bad.stderr


async def test_keys_list_and_revoke(api: Api, settings: Settings) -> None:
    env = env_for(settings.database_url, settings.namespace)
    kept = await new_key(settings.database_url, "acme")
    gone = await new_key(settings.database_url, "acme")
    other = await new_key(settings.database_url, "globex", admin=True)

    listed = await asyncio.to_thread(run, ["keys", "list", "--tenant", "acme", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    keys = json.loads(listed.stdout)
    assert [k["tenant"] for k in keys] == ["acme", "acme"] and not any(k["revoked_at"] for k in keys)
    assert [k["prefix"] for k in keys] == [kept[:10], gone[:10]]
    # never the keys themselves, in either format
    table = await asyncio.to_thread(run, ["keys", "list"], env)
    assert table.returncode == 0 and "globex" in table.stdout
    assert all(k not in out for k in (kept, gone, other) for out in (listed.stdout, table.stdout))

    by_key = await asyncio.to_thread(run, ["keys", "revoke", gone], env)
    assert by_key.returncode == 0, by_key.stderr
    by_id = await asyncio.to_thread(run, ["keys", "revoke", str(keys[0]["id"])], env)
    assert by_id.returncode == 0, by_id.stderr
    missing = await asyncio.to_thread(run, ["keys", "revoke", "jw_not-a-key"], env)
    assert missing.returncode == 1 and "no such key" in missing.stderr

    after = json.loads((await asyncio.to_thread(run, ["keys", "list", "--json"], env)).stdout)
    assert {k["tenant"]: bool(k["revoked_at"]) for k in after if k["tenant"] == "globex"} == {"globex": False}
    assert all(k["revoked_at"] for k in after if k["tenant"] == "acme")
    # neither key was used before, so no api has it cached: refused at once
    async with httpx.AsyncClient(base_url=api.url) as http:
        for key in (kept, gone):
            answer = await http.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 401
        assert (await http.get("/v1/jobs", headers={"Authorization": f"Bearer {other}"})).status_code == 200


@pytest.mark.slow
async def test_dev_runs_a_job_from_submission_to_completion(fresh_db: str, tmp_path: Path) -> None:
    namespace = f"cli{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = env_for(fresh_db, namespace, JOBWIRE_PORT=str(port))
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen([*JOBWIRE, "dev"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await http_ready(f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as anon:
            out = await asyncio.to_thread(run, ["keys", "create", "--tenant", "demo"], env)
            key = out.stdout.strip().splitlines()[-1]
            headers = {"Authorization": f"Bearer {key}"}
            r = await anon.post(
                "/v1/jobs", json={"type": "demo.sleep", "params": {"seconds": 1, "steps": 4}}, headers=headers
            )
            assert r.status_code == 202
            job_id = r.json()["id"]
            done = await anon.post(
                "/v1/jobs",
                json={"type": "demo.sleep", "params": {"seconds": 0}},
                headers={**headers, "Prefer": "wait=20"},
            )
            assert done.status_code == 200 and done.json()["status"] == "completed"
            r = await anon.get(f"/v1/jobs/{job_id}", headers={**headers})
            assert r.json()["status"] in ("running", "completed")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        logged = (tmp_path / "dev.log").read_text()
        assert "JOBWIRE_SECRET_KEY was not set" in logged
        generated = logged.split("JOBWIRE_SECRET_KEY=", 1)[1].split()[0]
        assert len(generated) >= 32  # long enough for the settings' minimum
    finally:
        if proc.poll() is None:
            proc.kill()
        await delete_namespace(REDIS_URL, namespace)


# ---- the command-line client ---------------------------------------------------------------------


def client_env(api: Api, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env.update(JOBWIRE_URL=api.url, JOBWIRE_API_KEY=key)
    return env


async def test_submit_wait_follows_the_job_and_prints_the_result(
    api: Api, settings: Settings, worker: WorkerService
) -> None:
    env = client_env(api, await new_key(settings.database_url, "acme"))
    out = await asyncio.to_thread(
        run, ["submit", "demo.sleep", "--param", "seconds=0.4", "--param", "steps=4", "--wait"], env
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"slept": 0.4, "steps": 4}
    assert "progress" in out.stderr and "100.0%" in out.stderr and "completed" in out.stderr

    out = await asyncio.to_thread(
        run, ["submit", "demo.sleep", "--params-json", '{"seconds": 0}', "--json"], env
    )
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    watched = await asyncio.to_thread(run, ["watch", job["id"], "--json"], env)
    assert watched.returncode == 0 and json.loads(watched.stdout)["status"] == "completed"


async def test_submit_run_at_and_delay_schedule_the_job(api: Api, settings: Settings) -> None:
    env = client_env(api, await new_key(settings.database_url, "acme"))
    out = await asyncio.to_thread(run, ["submit", "demo.sleep", "--delay", "2h", "--json"], env)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    delay = datetime.fromisoformat(job["run_at"]) - datetime.fromisoformat(job["created_at"])
    assert job["status"] == "scheduled" and abs(delay.total_seconds() - 7200) < 5
    at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    out = await asyncio.to_thread(run, ["submit", "demo.sleep", "--run-at", at.isoformat()], env)
    assert out.returncode == 0, out.stderr
    assert "scheduled, runs at" in out.stderr
    both = await asyncio.to_thread(
        run, ["submit", "demo.sleep", "--delay", "5", "--run-at", at.isoformat()], env
    )
    assert both.returncode == 2 and "not allowed with" in both.stderr
    bad = await asyncio.to_thread(run, ["submit", "demo.sleep", "--delay", "soon"], env)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


async def test_submit_depends_on_makes_a_waiting_job(api: Api, settings: Settings) -> None:
    env = client_env(api, await new_key(settings.database_url, "acme"))
    out = await asyncio.to_thread(run, ["submit", "demo.sum", "--json"], env)
    assert out.returncode == 0, out.stderr
    parent = json.loads(out.stdout)
    out = await asyncio.to_thread(
        run, ["submit", "demo.sum", "--depends-on", parent["id"], "--depends-on", parent["id"], "--json"], env
    )
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout)
    assert child["status"] == "waiting" and child["depends_on"] == [parent["id"]]


async def test_a_failing_job_exits_non_zero_with_its_error(
    api: Api, settings: Settings, worker: WorkerService
) -> None:
    env = client_env(api, await new_key(settings.database_url, "acme"))
    out = await asyncio.to_thread(
        run, ["submit", "demo.fail", "--param", "message=it broke", "--wait", "--json"], env
    )
    assert out.returncode == 1
    failed = json.loads(out.stdout)
    assert failed["status"] == "failed" and failed["error"] == {
        "type": "PermanentError",
        "message": "it broke",
    }


async def test_client_errors_are_clear(api: Api, settings: Settings) -> None:
    env = client_env(api, await new_key(settings.database_url, "acme"))
    bad = await asyncio.to_thread(run, ["submit", "demo.sleep", "--param", "seconds=-1"], env)
    assert bad.returncode == 2 and "params.seconds" in bad.stderr and "Traceback" not in bad.stderr
    nokey = await asyncio.to_thread(run, ["submit", "demo.sleep"], {**env, "JOBWIRE_API_KEY": ""})
    assert nokey.returncode == 2 and "JOBWIRE_API_KEY" in nokey.stderr
    down = await asyncio.to_thread(
        run, ["watch", "x"], {**env, "JOBWIRE_URL": f"http://127.0.0.1:{free_port()}"}
    )
    assert down.returncode == 2 and "cannot reach" in down.stderr


# markup that would crash rich, markup that would fake output, an emoji code, and terminal control
# sequences (clear the screen, then red); all must reach the terminal as the text they are
HOSTILE = "[/link] [bold red]FAKE[/] :thumbs_up: \x1b[2J\x1b[31mRED\x07 \u202eevil"


def assert_shown_as_text(output: str) -> None:
    assert "Traceback" not in output and "MarkupError" not in output
    assert "[/link] [bold red]FAKE[/] :thumbs_up:" in output
    assert "\\x1b[2J\\x1b[31mRED\\x07 \\u202eevil" in output  # visible, not acted on
    for raw in ("\x1b[2J", "\x1b[31mRED", "\x07", "\u202e", "\U0001f44d"):
        assert raw not in output, repr(raw)


@pytest.mark.parametrize("terminal", ["1", "0"], ids=["progress-bar", "plain-lines"])
async def test_tenant_text_is_printed_as_text_on_every_output_path(
    api: Api, settings: Settings, worker: WorkerService, terminal: str
) -> None:
    # TTY_COMPATIBLE=1: rich draws the live progress bar as on a terminal; 0: one line per event
    env = {**client_env(api, await new_key(settings.database_url, "acme")), "TTY_COMPATIBLE": terminal}
    env["COLUMNS"] = "400"  # no wrapping inside the text looked for
    for fail, code in ((False, 0), (True, 1)):
        params = json.dumps({"text": HOSTILE, "fail": fail})
        # submit --wait: the progress (bar or lines), then the result or the error's type and message
        out = await asyncio.to_thread(run, ["submit", "test.say", "--params-json", params, "--wait"], env)
        assert out.returncode == code, out.stderr
        assert_shown_as_text(out.stderr)
        if not fail:
            assert json.loads(out.stdout) == {"said": HOSTILE}  # the data itself, unchanged
        # watch: the finished job, through the same paths
        job_id = json.loads(
            (
                await asyncio.to_thread(run, ["submit", "test.say", "--params-json", params, "--json"], env)
            ).stdout
        )["id"]
        out = await asyncio.to_thread(run, ["watch", job_id], env)
        assert out.returncode == code, out.stderr
        assert_shown_as_text(out.stderr)
    # the server's error answers (which echo what was sent) printed as text too
    for args in (["submit", HOSTILE], ["watch", HOSTILE]):
        out = await asyncio.to_thread(run, args, env)
        assert out.returncode == 2, out.stderr
        assert "\x1b" not in out.stderr and "\u202e" not in out.stderr and "Traceback" not in out.stderr


def test_every_option_of_every_command_has_help() -> None:
    from jobwire.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    missing += walk(child, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert walk(build_parser(), "jobwire") == []


async def test_types_lists_the_job_types_and_their_params(api: Api, settings: Settings) -> None:
    env = client_env(api, await new_key(settings.database_url, "acme"))
    out = await asyncio.to_thread(run, ["types"], env)
    assert out.returncode == 0, out.stderr
    assert "demo.sleep" in out.stdout and "--param seconds=<number> = 1.0" in out.stdout
    as_json = json.loads((await asyncio.to_thread(run, ["types", "--json"], env)).stdout)
    assert as_json["demo.sleep"]["params"]["properties"]["steps"]["type"] == "integer"


async def test_submit_takes_a_webhook_url(database: str, namespace: str, registry: Registry) -> None:
    server = Api(make_settings(database, namespace, webhook_allow_private=True), registry)
    await server.start()
    try:
        env = client_env(server, await new_key(database, "acme"))
        url = "http://127.0.0.1:9/hook"
        out = await asyncio.to_thread(run, ["submit", "test.block", "--webhook-url", url, "--json"], env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["webhook_url"] == url
    finally:
        await server.stop()


async def test_ctrl_c_while_waiting_prints_how_to_resume_and_exits_130(
    api: Api, settings: Settings, worker: WorkerService
) -> None:
    env = {**client_env(api, await new_key(settings.database_url, "acme")), "TTY_COMPATIBLE": "0"}
    proc = await asyncio.create_subprocess_exec(
        *JOBWIRE, "submit", "demo.sleep", "--param", "seconds=20", "--param", "steps=200", "--wait",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    # following: progress lines arrive
    async with asyncio.timeout(20):
        while b"progress" not in await proc.stderr.readline():
            pass
    proc.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    text = stderr.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    job_id = text.split("jobwire watch ")[-1].strip()
    assert f"stopped following job {job_id}" in text
    async with httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Bearer {env['JOBWIRE_API_KEY']}"}
    ) as c:
        assert (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "running"  # the job goes on


async def test_schedules_create_list_pause_resume_trigger_delete(
    api: Api, settings: Settings, worker: WorkerService
) -> None:
    env = {**client_env(api, await new_key(settings.database_url, "acme")), "COLUMNS": "400"}
    name = "[/link] [bold red]FAKE[/] :thumbs_up:"  # markup in a name is text
    args = ["schedules", "create", name, "demo.sleep", "--every", "1h", "--param", "seconds=0"]
    created = await asyncio.to_thread(run, args, env)
    assert created.returncode == 0, created.stderr
    schedule_id = created.stdout.strip().splitlines()[-1]
    assert name in created.stderr and "every 3600 s" in created.stderr
    cron = await asyncio.to_thread(
        run, ["schedules", "create", "nightly", "demo.sleep", "--cron", "0 3 * * *", "--timezone",
              "Europe/Berlin", "--json"], env
    )  # fmt: skip
    assert json.loads(cron.stdout)["timezone"] == "Europe/Berlin", cron.stderr
    listed = await asyncio.to_thread(run, ["schedules", "list"], env)
    assert listed.returncode == 0 and name in listed.stdout and "0 3 * * * (Europe/Berlin)" in listed.stdout
    assert "\U0001f44d" not in listed.stdout  # no emoji code interpreted
    # by id or by name
    paused = await asyncio.to_thread(run, ["schedules", "pause", "nightly", "--json"], env)
    assert json.loads(paused.stdout)["paused"] is True and json.loads(paused.stdout)["next_run_at"] is None
    resumed = await asyncio.to_thread(run, ["schedules", "resume", schedule_id, "--json"], env)
    assert json.loads(resumed.stdout)["next_run_at"] is not None
    triggered = await asyncio.to_thread(run, ["schedules", "trigger", schedule_id, "--wait", "--json"], env)
    assert triggered.returncode == 0, triggered.stderr
    job = json.loads(triggered.stdout)
    assert job["status"] == "completed" and job["schedule_id"] == schedule_id
    listed = json.loads((await asyncio.to_thread(run, ["schedules", "list", "--json"], env)).stdout)
    assert {s["name"] for s in listed} == {name, "nightly"}
    assert next(s for s in listed if s["id"] == schedule_id)["last_job_id"] == job["id"]
    deleted = await asyncio.to_thread(run, ["schedules", "delete", "nightly"], env)
    assert deleted.returncode == 0, deleted.stderr
    # errors: the server's problem, with the field; an unknown name
    bad = await asyncio.to_thread(
        run, ["schedules", "create", "x", "demo.sleep", "--cron", "61 * * * *"], env
    )
    assert bad.returncode == 2 and "422" in bad.stderr and "body.cron" in bad.stderr, bad.stderr
    gone = await asyncio.to_thread(run, ["schedules", "trigger", "nightly"], env)
    assert gone.returncode == 2 and "no schedule named 'nightly'" in gone.stderr
    neither = await asyncio.to_thread(run, ["schedules", "create", "x", "demo.sleep"], env)
    assert neither.returncode == 2 and "--cron" in neither.stderr
