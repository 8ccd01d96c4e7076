"""Failed authentication: throttled per client address (429 + Retry-After before any lookup), bad
keys kept off the database, and X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from jobwire import apikeys
from jobwire.apikeys import Principal
from jobwire.config import Settings
from jobwire.registry import Registry
from tests.conftest import ROOT, Api, free_port, new_key

LIMIT = 5


def bad_key() -> str:
    """A key of the form create_key makes, that was never issued."""
    return apikeys.KEY_PREFIX + secrets.token_urlsafe(apikeys.KEY_BYTES)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every key the api looks up in PostgreSQL."""
    seen: list[str] = []
    real = apikeys.lookup

    async def counted(conn: Any, key: str) -> Principal | None:
        seen.append(key)
        return await real(conn, key)

    monkeypatch.setattr(apikeys, "lookup", counted)
    return seen


@pytest.fixture
async def start_api(settings: Settings, registry: Registry) -> AsyncIterator[Callable[..., Any]]:
    servers: list[Api] = []

    async def start(**overrides: Any) -> Api:
        # validated, as the environment would be (model_copy would not parse trusted_proxies)
        server = Api(Settings(**{**settings.model_dump(), **overrides}), registry)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def from_address(url: str, address: str) -> httpx.AsyncClient:
    """A client whose connections come from `address` (any of 127.0.0.0/8 reaches the server)."""
    return httpx.AsyncClient(
        base_url=url, timeout=30, transport=httpx.AsyncHTTPTransport(local_address=address)
    )


def assert_throttled(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["type"] == "urn:jobwire:problem:auth-rate-limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60


async def test_a_burst_of_bad_keys_from_one_address_is_throttled_before_any_lookup(
    start_api: Callable[..., Any], settings: Settings, lookups: list[str]
) -> None:
    api = await start_api(auth_failure_limit=LIMIT, auth_failure_window_s=60)
    good = await new_key(settings.database_url, "acme")
    fresh = await new_key(settings.database_url, "acme")
    async with from_address(api.url, "127.0.0.1") as attacker, from_address(api.url, "127.0.0.2") as other:
        assert (await attacker.get("/v1/jobs", headers=bearer(good))).status_code == 200
        for _ in range(LIMIT):
            assert (await attacker.get("/v1/jobs", headers=bearer(bad_key()))).status_code == 401
        assert len(lookups) == 1 + LIMIT
        # past the limit, every kind of failed credential is a 429, and none is looked up
        tried = len(lookups)
        for headers, query in (
            (bearer(bad_key()), ""),
            (bearer("not-even-a-key"), ""),
            ({"Authorization": "Basic dXNlcjpwdw=="}, ""),
            ({}, "?token=forged.token"),
            # X-Forwarded-For is not believed from an untrusted peer: rotating it changes nothing
            ({**bearer(bad_key()), "X-Forwarded-For": "203.0.113.9"}, ""),
        ):
            assert_throttled(await attacker.get(f"/v1/jobs/x/events{query}", headers=headers))
        assert len(lookups) == tried
        # a key in use is not affected
        assert (await attacker.get("/v1/jobs", headers=bearer(good))).status_code == 200
        # another address is not affected: its bad keys are 401, its new keys work
        assert (await other.get("/v1/jobs", headers=bearer(bad_key()))).status_code == 401
        assert (await other.get("/v1/jobs", headers=bearer(fresh))).status_code == 200


async def test_concurrent_guesses_cost_at_most_the_limit_in_lookups(
    start_api: Callable[..., Any], lookups: list[str]
) -> None:
    api = await start_api(auth_failure_limit=LIMIT, auth_failure_window_s=60)
    async with from_address(api.url, "127.0.0.3") as attacker:
        answers = await asyncio.gather(
            *(attacker.get("/v1/jobs", headers=bearer(bad_key())) for _ in range(40))
        )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * LIMIT + [429] * (40 - LIMIT)
    assert len(lookups) == LIMIT


async def test_a_burst_of_requests_with_a_key_not_yet_cached_costs_one_lookup_and_no_throttling(
    start_api: Callable[..., Any], settings: Settings, lookups: list[str]
) -> None:
    # a service that starts (or whose key just left the cache) and sends many requests at once:
    # they share one lookup, so the failed-authentication limit never counts them
    api = await start_api(auth_failure_limit=LIMIT, auth_failure_window_s=60)
    key = await new_key(settings.database_url, "acme")
    async with from_address(api.url, "127.0.0.4") as service:
        answers = await asyncio.gather(*(service.get("/v1/jobs", headers=bearer(key)) for _ in range(40)))
        assert [r.status_code for r in answers] == [200] * 40, {r.text for r in answers}
        # concurrent repeats of one bad key are one lookup (refusals are still counted and throttled)
        bad = bad_key()
        answers = await asyncio.gather(*(service.get("/v1/jobs", headers=bearer(bad)) for _ in range(40)))
        assert {r.status_code for r in answers} <= {401, 429}
    assert lookups.count(key) == 1 and lookups.count(bad) == 1


async def test_repeated_and_malformed_bad_keys_do_not_each_cost_a_lookup(
    start_api: Callable[..., Any], lookups: list[str]
) -> None:
    api = await start_api(auth_failure_limit=0)  # the throttle off: the cache alone
    repeated = bad_key()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anon:
        for _ in range(20):
            assert (await anon.get("/v1/jobs", headers=bearer(repeated))).status_code == 401
        # the negative cache lives 2 s; a slow machine may look the key up a second time
        assert 1 <= len(lookups) <= 2, lookups
        lookups.clear()
        # keys create_key never makes: refused without a lookup
        for malformed in (
            "nope",
            "jw_short",
            bad_key() + "x",
            bad_key()[:-1],
            "xx_" + bad_key()[3:],
            bad_key()[:-1] + "!",
            bad_key()[:-1] + "=",
        ):
            for path in ("/v1/jobs", f"/v1/jobs/x/events?token={malformed}"):
                headers = bearer(malformed) if "token" not in path else {}
                r = await anon.get(path, headers=headers)
                assert r.status_code == 401, (malformed, r.text)
        assert lookups == []


async def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(
    start_api: Callable[..., Any], lookups: list[str]
) -> None:
    api = await start_api(
        auth_failure_limit=LIMIT, auth_failure_window_s=60, trusted_proxies=["127.0.0.0/29", "10.0.0.0/8"]
    )
    async with from_address(api.url, "127.0.0.1") as proxy:

        def via(client: str) -> dict[str, str]:
            # a client's own claim, then what each trusted proxy appended
            return {**bearer(bad_key()), "X-Forwarded-For": f"198.51.100.1, {client}, 10.1.2.3"}

        for _ in range(LIMIT):
            assert (await proxy.get("/v1/jobs", headers=via("203.0.113.7"))).status_code == 401
        assert_throttled(await proxy.get("/v1/jobs", headers=via("203.0.113.7")))
        # another client behind the same proxies is its own address
        assert (await proxy.get("/v1/jobs", headers=via("203.0.113.8"))).status_code == 401
        # an IPv6 client is counted by its /64: changing the low bits does not help
        for n in range(LIMIT):
            assert (await proxy.get("/v1/jobs", headers=via(f"2001:db8::{n + 1}"))).status_code == 401
        assert_throttled(await proxy.get("/v1/jobs", headers=via("2001:db8::ffff")))
        assert (await proxy.get("/v1/jobs", headers=via("2001:db8:0:1::1"))).status_code == 401


# ---- /readyz and settings ------------------------------------------------------------------------


async def test_readyz_names_the_backend_that_is_down_and_nothing_else(
    start_api: Callable[..., Any], settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    pg_port, redis_port = free_port(), free_port()
    dead_pg = f"postgresql://readyz_user:pg-password@127.0.0.1:{pg_port}/jobwire"
    dead_redis = f"redis://127.0.0.1:{redis_port}/0"
    cases = {
        ("unavailable", "ok"): {"database_url": dead_pg},
        ("ok", "unavailable"): {"redis_url": dead_redis},
        ("unavailable", "unavailable"): {"database_url": dead_pg, "redis_url": dead_redis},
    }
    for (pg, redis), overrides in cases.items():
        api = await start_api(**overrides)
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as anon:
            r = await anon.get("/readyz")
        assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
        assert r.headers["Content-Type"].startswith("application/problem+json")
        body = r.json()
        assert body["postgresql"] == pg and body["redis"] == redis, body
        assert set(body) == {"type", "title", "status", "detail", "instance", "postgresql", "redis"}
        # no exception text: no address, port, user, errno
        for leak in (str(pg_port), str(redis_port), "127.0.0.1", "readyz_user", "rror", "refused", "("):
            assert leak not in r.text, (leak, r.text)
    logged = capfd.readouterr()
    assert "readiness: postgresql unavailable" in logged.out + logged.err
    assert "readiness: redis unavailable" in logged.out + logged.err


async def test_a_short_secret_key_stops_every_command_with_a_clear_message() -> None:
    short = "too-short-a-secret"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env["JOBWIRE_SECRET_KEY"] = short
    for command in (["api"], ["dev"], ["worker", "--burst"]):
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "jobwire", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, (command, out.stderr)
        assert "JOBWIRE_SECRET_KEY" in out.stderr and "at least 32" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and short not in out.stderr + out.stdout


def test_compose_has_no_default_secret_key() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "JOBWIRE_SECRET_KEY:-" not in text and "JOBWIRE_SECRET_KEY-" not in text  # no fallback
    # every service's environment (they share one anchor) sets it as ${VAR:?message}: compose stops
    # with the message when the variable is unset or empty
    values = re.findall(r"^\s+JOBWIRE_SECRET_KEY:\s*(.+)$", text, flags=re.MULTILINE)
    assert values
    for value in values:
        required = re.fullmatch(r'"\$\{JOBWIRE_SECRET_KEY:\?([^}]+)\}"', value)
        assert required is not None, value
        assert "32" in required.group(1)
