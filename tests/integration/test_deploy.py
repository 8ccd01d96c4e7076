"""What docker-compose.yml relies on, run for real: `jobwire migrate --wait` against a PostgreSQL
that starts after it, and `jobwire health worker|dispatcher` answering for live, stopped and
stalled processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from jobwire import liveness
from jobwire.config import Settings
from jobwire.liveness import Role
from tests.conftest import QUICK_WEBHOOKS, ROOT, eventually, free_port, make_settings
from tests.e2e.servers import PostgresServer
from workers.dispatcher import Dispatcher
from workers.worker import WorkerService

JOBWIRE = [sys.executable, "-m", "jobwire"]


def jobwire_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env.update(JOBWIRE_LOG_FORMAT="json", **values)
    return env


@pytest.fixture
def late_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()  # initdb only: not started
    yield server
    server.remove()


async def test_migrate_waits_for_a_postgres_that_starts_late(late_postgres: PostgresServer) -> None:
    migrate = subprocess.Popen(
        [*JOBWIRE, "migrate", "--wait", "30"],
        cwd=ROOT,
        env=jobwire_env(JOBWIRE_DATABASE_URL=late_postgres.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert migrate.stderr is not None
        # it has tried, been refused, and said so: only then does the server start
        waiting = await asyncio.to_thread(migrate.stderr.readline)
        assert f"PostgreSQL at 127.0.0.1:{late_postgres.port} is not accepting connections" in waiting
        assert "retrying for up to 30 s" in waiting
        await asyncio.to_thread(late_postgres.start)
        out, err = await asyncio.to_thread(migrate.communicate, timeout=30)
    finally:
        migrate.kill()
    assert migrate.returncode == 0, err
    assert "database jobwire: created and schema applied" in out
    conn = await asyncpg.connect(late_postgres.url)
    try:
        assert await conn.fetchval("SELECT to_regclass('jobs') IS NOT NULL")
    finally:
        await conn.close()


def jobwire(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOBWIRE, *args], cwd=ROOT, env=jobwire_env(**env), capture_output=True, text=True, timeout=30
    )


def nothing_listens() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/jobwire"


def test_migrate_gives_up_at_its_deadline_with_a_clear_message() -> None:
    started = time.monotonic()
    done = jobwire("migrate", "--wait", "1.5", JOBWIRE_DATABASE_URL=nothing_listens())
    assert done.returncode == 1
    assert time.monotonic() - started >= 1.5
    assert "did not accept a connection within 1.5 s" in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_without_wait_fails_at_once_and_says_how_to_wait() -> None:
    done = jobwire("migrate", JOBWIRE_DATABASE_URL=nothing_listens())
    assert done.returncode == 1
    assert "--wait DURATION" in done.stderr and "Traceback" not in done.stderr


def health(settings: Settings, role: Role, *extra: str) -> subprocess.CompletedProcess[str]:
    """The command a container healthcheck runs."""
    return jobwire(
        "health",
        role,
        *extra,
        JOBWIRE_NAMESPACE=settings.namespace,
        JOBWIRE_LIVENESS_DIR=settings.liveness_dir,
    )


def alive(settings: Settings, role: Role, max_age_s: float = 30) -> bool:
    return liveness.check(settings.liveness_dir, settings.namespace, role, max_age_s)[0]


@pytest.fixture
def here(database: str, namespace: str, tmp_path: Path) -> Settings:
    return make_settings(database, namespace, liveness_dir=str(tmp_path), **QUICK_WEBHOOKS)


async def test_worker_health_follows_the_worker(here: Settings) -> None:
    ok, why = liveness.check(here.liveness_dir, here.namespace, "worker", 30)
    assert not ok and "no worker has reported in" in why

    service = WorkerService(here)
    await service.start()
    try:
        await eventually(lambda: asyncio.sleep(0, alive(here, "worker")), what="the worker's first beat")
        now = await asyncio.to_thread(health, here, "worker")
        assert now.returncode == 0, now.stdout
        assert "worker: ok" in now.stdout
        # the dispatcher is another process: its check does not pass on the worker's file
        assert not alive(here, "dispatcher")
    finally:
        await service.stop(grace_s=0)
    assert not alive(here, "worker")  # at once, not once the file has aged


async def test_a_stalled_worker_is_not_alive(here: Settings) -> None:
    """A worker whose loop stopped turning (here: Redis unreachable) stops beating, and the check
    fails once the file is older than --max-age."""
    stalled = here.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    service = WorkerService(stalled)
    await service.start()
    try:
        await asyncio.sleep(0.3)  # several polls, all refused
        assert not alive(stalled, "worker")
        # a beat from earlier, aged past the limit, fails the check and says how long ago
        path = liveness.path_for(here.liveness_dir, here.namespace, "worker")
        path.touch()
        os.utime(path, (time.time() - 120, time.time() - 120))
        result = await asyncio.to_thread(health, here, "worker", "--max-age", "30")
        assert result.returncode == 1 and "s ago (more than 30 s)" in result.stdout
    finally:
        await service.stop(grace_s=0)


async def test_dispatcher_health_follows_the_dispatcher(here: Settings) -> None:
    dispatcher = Dispatcher(here)
    await dispatcher.start()
    try:
        await eventually(lambda: asyncio.sleep(0, alive(here, "dispatcher")), what="the first beat")
        # an idle dispatcher still beats: every poll (JOBWIRE_WEBHOOK_POLL_S) asks for due deliveries
        path = liveness.path_for(here.liveness_dir, here.namespace, "dispatcher")
        first = path.stat().st_mtime
        await eventually(
            lambda: asyncio.sleep(0, path.stat().st_mtime > first),
            timeout=here.webhook_poll_s + liveness.BEAT_EVERY_S + 3,
            what="a beat while idle",
        )
        assert (await asyncio.to_thread(health, here, "dispatcher")).returncode == 0
    finally:
        await dispatcher.stop()
    assert not alive(here, "dispatcher")
