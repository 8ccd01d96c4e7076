"""The live dashboard (GET /dashboard) end to end: a real api, a real worker, real Chromium.

Screenshots of every test land in artifacts/dashboard/ (gitignored) for a look after a run."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from jobwire.config import Settings
from service.state import HUB
from tests.conftest import (
    QUICK_WEBHOOKS,
    ROOT,
    Api,
    ClientFactory,
    eventually,
    make_settings,
    new_key,
    submit,
    wait_status,
)
from tests.integration.test_browser import browser
from tests.receiver import Receiver
from workers.dispatcher import Dispatcher
from workers.worker import WorkerService

__all__ = ["browser"]  # the fixture, re-exported for pytest

ARTIFACTS = ROOT / "artifacts" / "dashboard"
# generous: the machine is small and shared with other test runs
expect.set_options(timeout=15_000)


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, **QUICK_WEBHOOKS)


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Page, api: Api, key: str, route: str = "") -> None:
    await page.goto(f"{api.url}/dashboard{route}")
    await page.get_by_test_id("signin-key").fill(key)
    await page.get_by_test_id("signin-submit").click()
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")


def row(page: Page, job_id: str) -> Locator:
    return page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')


async def confirm(page: Page) -> None:
    dialog = page.get_by_test_id("confirm-dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_test_id("confirm-ok").click()
    await expect(dialog).to_be_hidden()


# ---- the files ---------------------------------------------------------------------------------


async def test_the_page_and_its_files_are_served_without_a_key(anon: httpx.AsyncClient) -> None:
    page = await anon.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache"
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    for name, ctype in [("app.js", "text/javascript"), ("app.css", "text/css")]:
        r = await anon.get(f"/dashboard/{name}")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(ctype), name
    # the page loads nothing from other origins
    html = page.text + (await anon.get("/dashboard/app.css")).text
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "@import" not in html
    # only files of the folder: no traversal, no other module of the package
    for path in [
        "/dashboard/nope.js",
        "/dashboard/..%2fdashboard.py",
        "/dashboard/%2e%2e%2fapp.py",
        "/dashboard/..",
    ]:
        r = await anon.get(path)
        assert r.status_code == 404, path
        assert r.headers["Content-Type"] == "application/problem+json"
    assert (await anon.get("/dashboard/", follow_redirects=False)).headers["Location"] == "/dashboard"
    # the data still needs a key
    assert (await anon.get("/v1/jobs")).status_code == 401


# ---- sign-in -----------------------------------------------------------------------------------


async def test_nothing_shows_without_a_key_a_wrong_key_is_refused_and_the_right_one_signs_in(
    page: Page, api: Api, client: httpx.AsyncClient, settings: Settings, worker: WorkerService
) -> None:
    job = await submit(client, "test.block", {"seconds": 60})
    await wait_status(client, job["id"], "running")
    await page.goto(f"{api.url}/dashboard")
    await expect(page.get_by_test_id("signin")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    await expect(page.get_by_test_id("job-row")).to_have_count(0)
    await screenshot(page, "signin")

    await page.get_by_test_id("signin-key").fill("jw_not-a-real-key")
    await page.get_by_test_id("signin-submit").click()
    error = page.get_by_test_id("signin-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("401")
    await expect(page.locator("#app")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    await screenshot(page, "signin-wrong-key")

    key = await new_key(settings.database_url, "acme")
    await page.get_by_test_id("signin-key").fill(key)
    await page.get_by_test_id("signin-submit").click()
    await expect(page.get_by_test_id("overview")).to_be_visible()
    await expect(page.get_by_test_id("signin")).to_be_hidden()
    await expect(page.get_by_test_id("identity")).to_contain_text("acme")  # learnt from its job
    await expect(page.get_by_test_id("running-now").locator(f'[data-job-id="{job["id"]}"]')).to_be_visible()
    await expect(page.get_by_test_id("stat-running")).not_to_have_text("—")

    # the key lives in sessionStorage: a reload stays signed in
    await page.reload()
    await expect(page.get_by_test_id("overview")).to_be_visible()
    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("signin")).to_be_visible()
    await expect(page.get_by_test_id("job-row")).to_have_count(0)
    assert await page.evaluate("sessionStorage.length") == 0
    await page.reload()
    await expect(page.get_by_test_id("signin")).to_be_visible()


# ---- live updates ------------------------------------------------------------------------------


async def test_a_new_job_appears_and_its_progress_runs_to_completed_without_a_reload(
    page: Page, api: Api, settings: Settings, client: httpx.AsyncClient, worker: WorkerService
) -> None:
    await sign_in(page, api, await new_key(settings.database_url, "acme"), "#/jobs")
    await expect(page.get_by_test_id("jobs-empty")).to_be_visible()
    await page.evaluate("window.__sameDocument = true")

    job = await submit(client, "demo.sleep", {"seconds": 2, "steps": 2})
    line = row(page, job["id"])
    await expect(line).to_be_visible()
    bar = line.get_by_test_id("job-progress")
    # it advances through the steps, live: half, then all of it
    await expect(bar).to_have_attribute("aria-valuenow", "50")
    await expect(line.get_by_test_id("job-status")).to_have_text("running")
    await expect(line.get_by_test_id("job-message")).to_have_text("step 1/2")
    await screenshot(page, "jobs-running")
    await expect(bar).to_have_attribute("aria-valuenow", "100")
    await expect(line.get_by_test_id("job-status")).to_have_text("completed")
    await expect(line.get_by_test_id("job-percent")).to_have_text("100%")
    assert await page.evaluate("window.__sameDocument") is True  # no reload happened
    await screenshot(page, "jobs-completed")

    # the detail page has the whole timeline and the result
    await line.get_by_role("link").click()
    view = page.get_by_test_id("job-view")
    await expect(view.get_by_test_id("detail-status")).to_have_text("completed")
    await expect(view.get_by_test_id("job-result")).to_contain_text('"slept": 2')
    types = view.get_by_test_id("timeline-event")
    await expect(types.first).to_have_attribute("data-type", "created")
    await expect(types.last).to_have_attribute("data-type", "completed")
    await expect(view.get_by_test_id("fact-attempts")).to_have_text("1 of 3")
    await expect(view.get_by_test_id("deliveries-empty")).to_be_visible()

    # a burst: the table stays one page long, and the page refetches it a few times a second at most
    # (the feed's events are applied per animation frame; new jobs cost one throttled list request)
    await page.get_by_test_id("nav-jobs").click()
    await expect(row(page, job["id"])).to_be_visible()
    lists: list[str] = []
    page.on("request", lambda r: lists.append(r.url) if "/v1/jobs?" in r.url else None)
    burst = await asyncio.gather(*(submit(client, "demo.sleep", {"seconds": 0.1}) for _ in range(80)))
    newest = max(burst, key=lambda j: (j["created_at"], j["id"]))
    await expect(row(page, newest["id"]).get_by_test_id("job-status")).to_have_text("completed")
    await expect(page.get_by_test_id("job-row")).to_have_count(50)
    await expect(page.locator('[data-testid="job-row"]:not([data-status="completed"])')).to_have_count(0)
    await expect(page.get_by_test_id("page-older")).to_be_enabled()
    assert len(lists) < 40, len(lists)


async def test_cancel_and_retry_from_the_job_page_ask_first_and_show_the_answer(
    page: Page, api: Api, settings: Settings, client: httpx.AsyncClient, worker: WorkerService
) -> None:
    running = await submit(client, "test.block", {"seconds": 60})
    await wait_status(client, running["id"], "running")
    await sign_in(page, api, await new_key(settings.database_url, "acme"), f"#/jobs/{running['id']}")
    view = page.get_by_test_id("job-view")
    await expect(view.get_by_test_id("detail-status")).to_have_text("running")
    await expect(view.get_by_test_id("action-retry")).to_be_disabled()

    # the dialog asks first: "keep it" changes nothing
    await view.get_by_test_id("action-cancel").click()
    dialog = page.get_by_test_id("confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Cancel this job?")
    await screenshot(page, "cancel-confirm")
    await dialog.get_by_test_id("confirm-cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(view.get_by_test_id("action-result")).to_be_hidden()
    assert (await client.get(f"/v1/jobs/{running['id']}")).json()["status"] == "running"

    await view.get_by_test_id("action-cancel").click()
    await confirm(page)
    await expect(view.get_by_test_id("action-result")).to_contain_text("202")
    await expect(view.get_by_test_id("detail-status")).to_have_text("cancelled")
    await expect(view.get_by_test_id("timeline-event").last).to_have_attribute("data-type", "cancelled")
    assert (await client.get(f"/v1/jobs/{running['id']}")).json()["status"] == "cancelled"
    await screenshot(page, "cancelled")

    # an action the state no longer allows shows the api's problem: status and detail
    other = await submit(client, "test.block", {"seconds": 60})
    await wait_status(client, other["id"], "running")
    await page.goto(f"{api.url}/dashboard#/jobs/{other['id']}")
    await expect(view.get_by_test_id("detail-status")).to_have_text("running")
    await view.get_by_test_id("action-cancel").click()
    await expect(dialog).to_be_visible()
    assert (await client.post(f"/v1/jobs/{other['id']}/cancel")).status_code == 202
    await wait_status(client, other["id"], "cancelled")
    await dialog.get_by_test_id("confirm-ok").click()
    result = view.get_by_test_id("action-result")
    await expect(result).to_contain_text("409")
    await expect(result).to_contain_text("only scheduled, waiting, pending or running jobs can be cancelled")
    await expect(result).to_have_attribute("data-ok", "false")

    # retry a failed job: it runs again
    failed = await submit(client, "demo.fail", {"message": "boom"})
    await wait_status(client, failed["id"], "failed")
    await page.goto(f"{api.url}/dashboard#/jobs/{failed['id']}")
    await expect(view.get_by_test_id("detail-status")).to_have_text("failed")
    await expect(view.get_by_test_id("job-error")).to_contain_text("boom")
    await expect(view.get_by_test_id("action-cancel")).to_be_disabled()
    await view.get_by_test_id("action-retry").click()
    await confirm(page)
    await expect(view.get_by_test_id("action-result")).to_contain_text("202")
    started = view.locator('[data-testid="timeline-event"][data-type="started"]')
    await expect(started).to_have_count(2)
    await expect(view.locator('[data-testid="timeline-event"][data-type="retrying"]')).to_have_count(1)
    await expect(view.get_by_test_id("detail-status")).to_have_text("failed")
    await expect(view.locator('[data-testid="timeline-event"][data-type="failed"]')).to_have_count(2)
    events = (await client.get(f"/v1/jobs/{failed['id']}")).json()
    assert events["status"] == "failed" and events["attempts"] == 1
    await screenshot(page, "retried")


async def test_the_job_page_lists_webhook_deliveries_with_attempts_and_redelivers(
    page: Page, api: Api, settings: Settings, client: httpx.AsyncClient
) -> None:
    receiver = Receiver()
    receiver.default = 500  # every attempt fails until the receiver is fixed
    await receiver.start()
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    try:
        job = await submit(client, "test.block", {"seconds": 30}, webhook_url=f"{receiver.url}/hook")
        assert (await client.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 200

        async def dead_lettered() -> bool:
            items = (await client.get(f"/v1/jobs/{job['id']}/deliveries")).json()["items"]
            return bool(items) and items[0]["status"] == "failed"

        await eventually(dead_lettered, timeout=15, what="the delivery to fail")
        await sign_in(page, api, await new_key(settings.database_url, "acme"), f"#/jobs/{job['id']}")
        delivery = page.get_by_test_id("delivery")
        await expect(delivery).to_have_count(1)
        await expect(delivery.get_by_test_id("delivery-status")).to_have_text("failed")
        await expect(delivery).to_contain_text("3 attempts")
        await expect(delivery).to_contain_text("HTTP 500")
        await delivery.locator("summary").click()
        await expect(delivery.locator(".attempts-table tbody tr")).to_have_count(3)
        await screenshot(page, "deliveries-failed")

        receiver.default = 200
        await delivery.get_by_test_id("action-redeliver").click()
        await confirm(page)
        await expect(page.get_by_test_id("action-result")).to_contain_text("202")
        await expect(delivery.get_by_test_id("delivery-status")).to_have_text("delivered")
        assert len(receiver.at("/hook")) == 4
        await screenshot(page, "deliveries-redelivered")
    finally:
        await dispatcher.stop()
        await receiver.stop()


async def test_a_dropped_connection_shows_reconnecting_then_catches_up(
    page: Page, api: Api, settings: Settings, client: httpx.AsyncClient, worker: WorkerService
) -> None:
    await sign_in(page, api, await new_key(settings.database_url, "acme"), "#/jobs")
    job = await submit(client, "demo.sleep", {"seconds": 2.5, "steps": 5})
    line = row(page, job["id"])
    await expect(line.get_by_test_id("job-status")).to_have_text("running")

    # the api goes away: the page says so, and the job finishes meanwhile
    await api.stop()
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "reconnecting")
    await expect(page.get_by_test_id("reconnect-banner")).to_be_visible()
    await expect(page.get_by_test_id("reconnect-banner")).to_contain_text("reconnecting")
    await screenshot(page, "reconnecting")
    # and another api (another process in a real deployment) takes a job the page never heard of
    other = Api(settings, api.registry)
    await other.start()
    try:
        async with httpx.AsyncClient(base_url=other.url, headers=client.headers, timeout=30) as side:
            await wait_status(side, job["id"], "completed")
            missed = await submit(side, "demo.sleep", {"seconds": 0.2})
            await wait_status(side, missed["id"], "completed")
    finally:
        await other.stop()
    assert (await line.get_by_test_id("job-status").text_content()) == "running"  # stale, for now

    await api.start()  # the same port: the page reconnects on its own and fetches again
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    await expect(page.get_by_test_id("reconnect-banner")).to_be_hidden()
    await expect(line.get_by_test_id("job-status")).to_have_text("completed")
    await expect(line.get_by_test_id("job-progress")).to_have_attribute("aria-valuenow", "100")
    await expect(row(page, missed["id"]).get_by_test_id("job-status")).to_have_text("completed")
    await screenshot(page, "reconnected")

    # a server-side {"op": "resync"} (the api lost Redis for a while) makes the page fetch again too
    assert api.runner is not None
    async with page.expect_request(lambda r: "/v1/jobs?" in r.url):
        api.runner.app[HUB]._resync_all()


async def test_a_tenant_sees_only_its_jobs_and_an_admin_sees_every_tenant(
    browser: Browser, api: Api, settings: Settings, make_client: ClientFactory
) -> None:
    acme, globex = await make_client("acme"), await make_client("globex")
    mine = await submit(acme, "test.block", {"seconds": 60})
    theirs = await submit(globex, "test.block", {"seconds": 60})

    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    errors: list[str] = []
    context.on("weberror", lambda e: errors.append(str(e.error)))
    try:
        tenant_page = await context.new_page()
        await sign_in(tenant_page, api, await new_key(settings.database_url, "acme"), "#/jobs")
        await expect(row(tenant_page, mine["id"])).to_be_visible()
        await expect(row(tenant_page, theirs["id"])).to_have_count(0)
        await expect(tenant_page.get_by_role("columnheader", name="Tenant")).to_have_count(0)
        await expect(tenant_page.get_by_test_id("filter-tenant")).to_have_count(0)
        # nor by id: search, or the job page
        await tenant_page.get_by_test_id("search-id").fill(theirs["id"])
        await tenant_page.get_by_test_id("search-submit").click()
        await expect(tenant_page.get_by_test_id("search-error")).to_contain_text("No job")
        await tenant_page.goto(f"{api.url}/dashboard#/jobs/{theirs['id']}")
        await expect(tenant_page.get_by_test_id("job-missing")).to_be_visible()
        # a job of another tenant submitted now does not show up live either
        await tenant_page.goto(f"{api.url}/dashboard#/jobs")
        later = await submit(globex, "test.block", {"seconds": 60})
        own_later = await submit(acme, "test.block", {"seconds": 60})
        await expect(row(tenant_page, own_later["id"])).to_be_visible()
        await expect(row(tenant_page, later["id"])).to_have_count(0)
        await screenshot(tenant_page, "tenant-view")

        admin_page = await context.new_page()  # its own tab: its own sessionStorage
        await sign_in(admin_page, api, await new_key(settings.database_url, "ops", admin=True), "#/jobs")
        await expect(admin_page.get_by_test_id("identity")).to_contain_text("all tenants")
        await expect(admin_page.get_by_role("columnheader", name="Tenant")).to_be_visible()
        for job, tenant in [(mine, "acme"), (theirs, "globex"), (later, "globex")]:
            await expect(row(admin_page, job["id"]).get_by_test_id("job-tenant")).to_have_text(tenant)
        # and filters by tenant on the server
        await admin_page.get_by_test_id("filter-tenant").fill("globex")
        await expect(row(admin_page, mine["id"])).to_have_count(0)
        await expect(row(admin_page, theirs["id"])).to_be_visible()
        await expect(admin_page).to_have_url(re.compile(r"tenant=globex"))
        await screenshot(admin_page, "admin-view")
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the pages: {errors}"


# ---- schedules ---------------------------------------------------------------------------------


async def test_the_schedules_view_shows_runs_and_pauses_resumes_and_triggers_after_asking(
    page: Page, api: Api, client: httpx.AsyncClient, settings: Settings, worker: WorkerService
) -> None:
    r = await client.post(
        "/v1/schedules",
        json={
            "name": "nightly <b>report</b>",  # tenant text is shown as text
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "job": {"type": "demo.sleep", "params": {"seconds": 0}},
        },
    )
    s = r.json()
    first = (await client.post(f"/v1/schedules/{s['id']}/trigger")).json()
    await sign_in(page, api, await new_key(settings.database_url, "acme"), "#/schedules")
    schedule = page.locator(f'[data-testid="schedule-row"][data-schedule-id="{s["id"]}"]')
    await expect(schedule.get_by_test_id("schedule-name")).to_have_text("nightly <b>report</b>")
    await expect(schedule.get_by_test_id("schedule-timetable")).to_have_text("0 3 * * * (Europe/Berlin)")
    await expect(schedule.get_by_test_id("schedule-next")).to_have_attribute("datetime", s["next_run_at"])
    await expect(schedule.get_by_test_id("schedule-next")).to_have_text(re.compile(r"^in "))
    await expect(schedule.get_by_test_id("schedule-last-job")).to_have_attribute(
        "href", f"#/jobs/{first['id']}"
    )
    await screenshot(page, "schedules")

    # pause asks first: keeping it changes nothing
    await schedule.get_by_test_id("schedule-toggle").click()
    await page.get_by_test_id("confirm-dialog").get_by_test_id("confirm-cancel").click()
    assert (await client.get(f"/v1/schedules/{s['id']}")).json()["paused"] is False
    await schedule.get_by_test_id("schedule-toggle").click()
    await confirm(page)
    await expect(schedule.get_by_test_id("schedule-paused")).to_be_visible()
    await expect(schedule.get_by_test_id("schedule-toggle")).to_have_text("Resume")
    assert (await client.get(f"/v1/schedules/{s['id']}")).json()["next_run_at"] is None
    await schedule.get_by_test_id("schedule-toggle").click()
    await confirm(page)
    await expect(schedule.get_by_test_id("schedule-toggle")).to_have_text("Pause")
    assert (await client.get(f"/v1/schedules/{s['id']}")).json()["paused"] is False

    # run now: a job of the schedule, which becomes its last run, one click from its page
    await schedule.get_by_test_id("schedule-trigger").click()
    await confirm(page)
    await expect(page.get_by_test_id("schedules-notice")).to_contain_text("Submitted job")
    after = (await client.get(f"/v1/schedules/{s['id']}")).json()
    assert after["last_job_id"] != first["id"]
    link = schedule.get_by_test_id("schedule-last-job")
    await expect(link).to_have_attribute("href", f"#/jobs/{after['last_job_id']}")
    await link.click()
    await expect(page).to_have_url(re.compile(f"#/jobs/{after['last_job_id']}$"))
    await expect(page.get_by_test_id("nav-jobs")).to_have_attribute("aria-current", "page")


async def test_scheduled_jobs_show_their_time_in_the_jobs_view(
    page: Page, api: Api, client: httpx.AsyncClient, settings: Settings
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0}, delay_s=2 * 3600 + 60)
    await sign_in(page, api, await new_key(settings.database_url, "acme"), "#/jobs?status=scheduled")
    jr = row(page, job["id"])
    await expect(jr.get_by_test_id("job-status")).to_have_text("scheduled")
    await expect(jr).to_contain_text("runs in 2 h")
    await expect(jr.get_by_test_id("job-message")).to_contain_text("runs ")
