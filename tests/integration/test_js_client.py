"""The JavaScript/TypeScript client (clients/js, the npm package `jobwire`): built with tsc from its
lockfile (`npm ci && npm run build`), its own tests (`npm test`: Node's test runner) against a real
api and worker, and a browser test: Debian's Chromium, on a page served from another origin, submits
a job with the package, follows it across an api restart and sees its result."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from jobwire.config import Settings
from jobwire.registry import Registry
from tests import npm
from tests.conftest import ROOT, Api, free_port, new_key
from workers.worker import WorkerService

JS = ROOT / "clients" / "js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def js_build() -> Path:
    npm.ci(JS)
    npm.run(JS, "build")
    return JS / "dist"


def test_the_package_is_typed_es_modules_without_runtime_dependencies(js_build: Path) -> None:
    package = json.loads((JS / "package.json").read_text())
    assert package["name"] == "jobwire" and package["type"] == "module"
    assert "dependencies" not in package
    assert package["peerDependencies"] == {"react": ">=18"}
    for entry in (".", "./react"):
        target = package["exports"][entry]
        assert (JS / target["import"]).is_file() and (JS / target["types"]).is_file(), entry
    assert "jobwire/react" not in (js_build / "index.js").read_text()  # React stays out of the core


async def test_the_js_client_tests_pass_against_a_real_jobwire(
    js_build: Path, api: Api, worker: WorkerService, settings: Settings
) -> None:
    key = await new_key(settings.database_url, "acme")
    env = {**os.environ, "JOBWIRE_URL": api.url, "JOBWIRE_API_KEY": key}
    proc = await asyncio.create_subprocess_exec(
        "npm", "test", cwd=JS, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    # none skipped (the suites skip themselves without JOBWIRE_URL): each ran against this api
    assert "# skipped 0" in report and "# fail 0" in report, report[-3000:]
    passed = int(report.split("# pass ")[1].split()[0])
    assert passed >= 21, report[-3000:]


# ---- in a browser, from another origin ----------------------------------------------------------

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>jobwire client</title></head>
<body><script type="module">
import { Client, followJob } from "/jobwire/index.js";
window.jobwire = { Client, followJob };
window.ready = true;
</script></body></html>"""

# in the page: submit with the package's Client, then follow with followJob
START = """
async ({ baseUrl, apiKey }) => {
  const client = new window.jobwire.Client({ baseUrl, apiKey });
  const job = await client.submit("demo.sleep", { seconds: 2.5, steps: 10 });
  window.seen = { events: [], ends: [], errors: [] };
  window.following = window.jobwire.followJob(client.eventsUrl(job), {
    onEvent: (event) => window.seen.events.push(event),
    onEnd: (event) => window.seen.ends.push(event),
    onError: (error) => window.seen.errors.push(String(error)),
  });
  window.client = client;
  return job;
}
"""


class PageServer:
    """The page and the built package, on their own port: another origin than the api's."""

    def __init__(self, dist: Path) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        app = web.Application()

        async def index(request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html")

        app.router.add_get("/", index)
        app.router.add_static("/jobwire/", dist)
        self.runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@pytest.fixture
async def page_server(js_build: Path) -> AsyncIterator[PageServer]:
    server = PageServer(js_build)
    await server.start()
    yield server
    await server.runner.cleanup()


@pytest.fixture
async def page(page_server: PageServer) -> AsyncIterator[Page]:
    if not shutil.which("chromium") and not shutil.which(CHROMIUM):
        pytest.skip("Chromium is not installed (scripts/test installs it: apt-get install chromium)")
    async with async_playwright() as p:
        browser: Browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = await browser.new_page()
        await tab.goto(page_server.origin + "/")
        await tab.wait_for_function("window.ready === true")
        yield tab
        await browser.close()


async def seen(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate("window.seen")
    return value


async def until(page: Page, condition: str, timeout_s: float = 15) -> None:
    await page.wait_for_function(condition, timeout=timeout_s * 1000)


async def test_a_page_on_another_origin_submits_follows_across_an_api_restart_and_sees_the_result(
    page: Page, page_server: PageServer, settings: Settings, registry: Registry, worker: WorkerService
) -> None:
    allowed = settings.model_copy(update={"cors_origins": [page_server.origin]})
    api = Api(allowed, registry)
    await api.start()
    key = await new_key(settings.database_url, "acme")
    try:
        job = await page.evaluate(START, {"baseUrl": api.url, "apiKey": key})
        assert job["status"] in ("pending", "running")
        await until(page, "window.seen.events.some((e) => e.type === 'progress')")

        # the api goes away mid-job and comes back on the same address: EventSource reconnects
        # with Last-Event-ID and the stream resumes where it was
        await api.stop()
        before = await seen(page)
        assert before["ends"] == [], "the job ended before the restart: nothing was resumed"
        restarted = Api(allowed, registry)
        restarted.port, restarted.url = api.port, api.url
        await restarted.start()
        api = restarted

        await until(page, "window.seen.ends.length === 1 || window.seen.errors.length > 0")
        result = await seen(page)
        assert result["errors"] == []
        seqs = [event["seq"] for event in result["events"]]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate across the restart
        assert len(seqs) > len(before["events"])  # events came after the restart, on a new connection
        end = result["ends"][0]
        assert end["type"] == "completed" and end["result"] == {"slept": 2.5, "steps": 10}
        assert await page.evaluate("window.following.closed")
        # the REST client reads the finished job across origins too (a preflighted GET with the key)
        final = await page.evaluate(f"window.client.get({json.dumps(job['id'])})")
        assert final["status"] == "completed" and final["progress"] == 100
        assert await page.evaluate("location.origin") != api.url
    finally:
        await api.stop()
