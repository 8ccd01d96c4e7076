"""Fixtures: every test gets its own PostgreSQL database (cloned from a template holding
schema.sql) and its own Redis namespace, and talks to real servers over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import structlog
from aiohttp import web

from jobwire import apikeys, db, logs, redis_client
from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.redis_client import create_redis
from jobwire.registry import Registry, load_job_types
from service.app import create_app
from workers.transitions import Transitions
from workers.worker import WorkerService

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("JOBWIRE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("JOBWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# one template per test session, so that two runs on one server (a developer and CI) never drop
# each other's template
TEMPLATE = f"jobwire_test_template_{os.getpid()}"
TEST_JOB_MODULES = ["tests.jobtypes"]
T = TypeVar("T")


def db_url(name: str) -> str:
    return db._with_database(PG_URL, name)


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    async def build() -> None:
        admin = await asyncpg.connect(PG_URL)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await admin.close()
        await db.apply_schema(db_url(TEMPLATE))

    asyncio.run(build())
    yield TEMPLATE
    asyncio.run(drop_database(TEMPLATE))


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def http_ready(url: str, path: str = "/readyz", timeout: float = 30) -> None:
    """Until a server at `url` answers 200 on `path`."""
    async with httpx.AsyncClient(base_url=url) as c:

        async def up() -> bool:
            try:
                return (await c.get(path)).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, timeout=timeout, what=f"{url}{path} to answer 200")


async def _clone_template(template_db: str) -> AsyncIterator[str]:
    name = f"jobwire_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    finally:
        await admin.close()
    yield db_url(name)
    await drop_database(name)


@pytest.fixture
async def database(template_db: str) -> AsyncIterator[str]:
    async for url in _clone_template(template_db):
        yield url


@pytest.fixture
async def other_database(template_db: str) -> AsyncIterator[str]:
    """A second database, for a second deployment (another namespace) in the same test."""
    async for url in _clone_template(template_db):
        yield url


@contextlib.asynccontextmanager
async def database_of(schema_sql: str) -> AsyncIterator[str]:
    """A fresh database holding `schema_sql` (an older schema, for the upgrade tests), dropped after."""
    name = f"jobwire_up_{uuid.uuid4().hex[:10]}"
    url = db_url(name)
    await db.create_database_if_missing(url)
    await db.apply_schema(url, schema_sql)
    try:
        yield url
    finally:
        await drop_database(name)


async def delete_namespace(redis_url: str, namespace: str) -> None:
    redis = create_redis(redis_url)
    try:
        await redis_client.delete_namespace(redis, Keys(namespace))
    finally:
        await redis.aclose()


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    ns = f"t{uuid.uuid4().hex[:10]}"
    yield ns
    await delete_namespace(REDIS_URL, ns)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that call logs.configure(), which changes process-wide state: put structlog, the
    root logger, ARQ's logger and logs.output back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    arq_level = logging.getLogger("arq").level
    threshold, stream = logs.output.threshold, logs.output.json_stream
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:], root.level = handlers, level
    logging.getLogger("arq").setLevel(arq_level)
    logs.output.threshold, logs.output.json_stream = threshold, stream


def make_settings(database_url: str, namespace: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "namespace": namespace,
        "secret_key": "test-secret-key-of-32-characters-or-more",
        "access_log": False,
        "worker_poll_delay_s": 0.05,
        "worker_grace_s": 2,
        "progress_interval_s": 0.05,
        "reconcile_interval_s": 1.0,
        "job_modules": TEST_JOB_MODULES,
        # tests fire bursts from one key; the limits have tests of their own
        "rate_limit_per_s": 0,
        "max_streams_per_key": 100_000,
        **overrides,
    }
    return Settings(**values)


# webhooks to a receiver on this machine, on a tiny retry schedule: 0.2 s, 0.4 s (±20 %), three
# attempts in all, each with a 1 s deadline
QUICK_WEBHOOKS: dict[str, Any] = {
    "webhook_allow_private": True,
    "webhook_backoff_base_s": 0.2,
    "webhook_backoff_factor": 2,
    "webhook_backoff_max_s": 2,
    "webhook_backoff_max_attempts": 3,
    "webhook_timeout_s": 1,
    "webhook_lease_s": 3,
    "webhook_poll_s": 0.5,
}


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_job_types(TEST_JOB_MODULES)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(settings.database_url, max_size=4)
    yield p
    await p.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """A real jobwire api on a free port."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        self.runner = web.AppRunner(create_app(self.settings, self.registry), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def api(settings: Settings, registry: Registry) -> AsyncIterator[Api]:
    server = Api(settings, registry)
    await server.start()
    yield server
    await server.stop()


async def new_key(database_url: str, tenant: str, *, admin: bool = False) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return await apikeys.create_key(conn, tenant, admin=admin)
    finally:
        await conn.close()


ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(api: Api, settings: Settings) -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    async def make(tenant: str = "acme", *, admin: bool = False) -> httpx.AsyncClient:
        key = await new_key(settings.database_url, tenant, admin=admin)
        client = httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("acme")


@pytest.fixture
async def anon(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as c:
        yield c


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[WorkerService]:
    service = WorkerService(settings)
    await service.start()
    yield service
    await service.stop(grace_s=0)


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = 10, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(interval)


async def wait_status(
    client: httpx.AsyncClient, job_id: str, statuses: str | set[str], timeout: float = 10
) -> dict[str, Any]:
    wanted = {statuses} if isinstance(statuses, str) else statuses

    async def check() -> dict[str, Any] | None:
        r = await client.get(f"/v1/jobs/{job_id}")
        body: dict[str, Any] = r.json()
        return body if body["status"] in wanted else None

    return await eventually(check, timeout=timeout, what=f"job {job_id} to be {wanted}")


async def submit(
    client: httpx.AsyncClient, type_: str, params: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    r = await client.post("/v1/jobs", json={"type": type_, "params": params or {}, **extra})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def events_of(pool: asyncpg.Pool, job_id: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch("SELECT * FROM job_events WHERE job_id = $1 ORDER BY seq", uuid.UUID(job_id))
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Any]:
    """A webhook receiver on a free port (tests/receiver.py), recording every request."""
    from tests.receiver import Receiver  # it imports this module

    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def transitions(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[Transitions]:
    redis = create_redis(settings.redis_url)
    keys = Keys(settings.namespace)
    t = Transitions(pool, redis, keys)
    task = asyncio.ensure_future(t.run())
    try:
        yield t
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await redis_client.delete_namespace(redis, keys)
        await redis.aclose()
