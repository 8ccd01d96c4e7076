"""A real browser's EventSource against the SSE stream: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import Api, submit
from workers.worker import WorkerService

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Runs in the page: follows one events_url with EventSource until the browser gives up on it.
FOLLOW = """
async (url) => new Promise((resolve) => {
  const events = [];
  let opens = 0;
  const source = new EventSource(url);
  source.onopen = () => { opens += 1; };
  for (const type of ["created", "started", "progress", "retrying", "completed", "failed", "cancelled"]) {
    source.addEventListener(type, (e) =>
      events.push({id: e.lastEventId, type: e.type, data: JSON.parse(e.data)}));
  }
  // after the terminal event the server ends the stream; EventSource reconnects with
  // Last-Event-ID, gets 204, and closes for good (readyState 2) instead of looping
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) resolve({events, opens, state: source.readyState});
  };
  setTimeout(() => resolve({events, opens, state: source.readyState, timedOut: true}), 20000);
})
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which("chromium") and not shutil.which(CHROMIUM):
        pytest.skip("Chromium is not installed (scripts/setup.sh installs it: apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        await b.close()


async def test_event_source_follows_a_job_and_stops_after_the_end(
    browser: Browser, api: Api, client: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 1, "steps": 4})
    page = await browser.new_page()
    await page.goto(f"{api.url}/healthz")  # same origin as the stream
    result: dict[str, Any] = await page.evaluate(FOLLOW, job["events_url"])
    events = result["events"]
    assert not result.get("timedOut"), result
    assert result["state"] == 2  # CLOSED: the 204 stopped the reconnects
    assert [e["data"]["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["id"] for e in events] == [str(e["data"]["seq"]) for e in events]
    assert events[0]["type"] == "created" and events[-1]["type"] == "completed"
    assert events[-1]["data"]["result"] == {"slept": 1.0, "steps": 4}
    assert result["opens"] == 1
