"""The dashboard's batch views in real Chromium against a real api and worker: the list, one batch's
progress bar, counts and jobs live to the end, and cancel asking first with the number of jobs."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from jobwire.config import Settings
from tests.conftest import Api, make_settings, new_key
from tests.integration.test_browser import browser
from tests.integration.test_dashboard import confirm, page, screenshot, sign_in
from workers.worker import WorkerService

__all__ = ["browser", "page"]  # the fixtures, re-exported for pytest

expect.set_options(timeout=15_000)


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, batch_settle_s=0.05)


async def test_a_batch_runs_to_its_end_in_the_dashboard(
    page: Page, api: Api, client: httpx.AsyncClient, settings: Settings, worker: WorkerService
) -> None:
    jobs = [{"type": "demo.sleep", "params": {"seconds": 1.5, "steps": 3}} for _ in range(6)]
    jobs.append({"type": "demo.fail"})
    batch = (await client.post("/v1/batches", json={"jobs": jobs})).json()
    await sign_in(page, api, await new_key(settings.database_url, "acme"), "#/batches")
    await expect(page.get_by_test_id("nav-batches")).to_have_attribute("aria-current", "page")
    row = page.locator(f'[data-testid="batch-row"][data-batch-id="{batch["id"]}"]')
    await expect(row).to_be_visible()
    await row.get_by_test_id("batch-link").click()
    await expect(page).to_have_url(re.compile(f"#/batches/{batch['id']}$"))
    await expect(page.get_by_test_id("batch-job-row")).to_have_count(7)
    # live to the end without a reload: counts, the bar and the status
    await expect(page.get_by_test_id("batch-count-completed")).to_have_text("6", timeout=30_000)
    await expect(page.get_by_test_id("batch-count-failed")).to_have_text("1")
    await expect(page.get_by_test_id("batch-status")).to_have_text("completed")
    # the mean of its jobs' progress: six at 100, demo.fail (which reports none) at 0
    await expect(page.get_by_test_id("batch-progress-text")).to_have_text("85.7%")
    await expect(page.get_by_test_id("batch-cancel")).to_be_hidden()
    await screenshot(page, "batch-completed")


async def test_cancel_asks_first_with_the_number_of_jobs_it_ends(
    page: Page, api: Api, client: httpx.AsyncClient, settings: Settings
) -> None:
    jobs = [{"type": "test.block", "params": {"seconds": 30}} for _ in range(4)]
    batch = (await client.post("/v1/batches", json={"jobs": jobs})).json()
    await sign_in(page, api, await new_key(settings.database_url, "acme"), f"#/batches/{batch['id']}")
    await expect(page.get_by_test_id("batch-count-pending")).to_have_text("4")
    # keeping it changes nothing
    await page.get_by_test_id("batch-cancel").click()
    dialog = page.get_by_test_id("confirm-dialog")
    await expect(dialog).to_contain_text("4 unfinished jobs")
    await dialog.get_by_test_id("confirm-cancel").click()
    assert (await client.get(f"/v1/batches/{batch['id']}")).json()["status"] == "running"
    await page.get_by_test_id("batch-cancel").click()
    await confirm(page)
    await expect(page.get_by_test_id("batch-notice")).to_contain_text("Cancelled the batch")
    await expect(page.get_by_test_id("batch-count-cancelled")).to_have_text("4")
    await expect(page.get_by_test_id("batch-status")).to_have_text("cancelled")
    assert (await client.get(f"/v1/batches/{batch['id']}")).json()["counts"]["cancelled"] == 4


async def test_another_tenants_batch_is_not_shown(
    page: Page, api: Api, client: httpx.AsyncClient, settings: Settings
) -> None:
    batch = (await client.post("/v1/batches", json={"jobs": [{"type": "demo.sleep"}]})).json()
    await sign_in(page, api, await new_key(settings.database_url, "umbrella"), f"#/batches/{batch['id']}")
    await expect(page.get_by_test_id("batch-error")).to_contain_text(f"No batch {batch['id']}")
    await page.get_by_test_id("nav-batches").click()
    await expect(page.get_by_test_id("batches-empty")).to_be_visible()


_ = Browser  # the fixture's type, for readers
