"""The dashboard's label filter and its "cancel/retry all N matching" on a filtered job list: a real
api and real Chromium."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from jobwire.config import Settings
from tests.conftest import Api, new_key, submit
from tests.integration.test_dashboard import browser, confirm, page, row, screenshot, settings, sign_in

__all__ = ["browser", "page", "settings"]  # the fixtures, re-exported for pytest


async def _statuses(client: httpx.AsyncClient, label: str) -> list[str]:
    r = await client.get("/v1/jobs", params={"label": label})
    return sorted(j["status"] for j in r.json()["items"])


async def test_a_filtered_list_cancels_and_retries_all_matching_after_asking(
    page: Page, api: Api, settings: Settings, client: httpx.AsyncClient
) -> None:
    tagged = [
        await submit(client, "demo.sleep", {"seconds": 1}, labels={"run": "x"}, delay_s=3600)
        for _ in range(3)
    ]
    gone = await submit(client, "demo.sleep", {"seconds": 1}, labels={"run": "x"}, delay_s=3600)
    assert (await client.post(f"/v1/jobs/{gone['id']}/cancel")).status_code == 200
    other = await submit(client, "demo.sleep", {"seconds": 1}, labels={"run": "y"}, delay_s=3600)

    await sign_in(page, api, await new_key(settings.database_url, "acme"), "#/jobs?label=run:x")
    view = page.get_by_test_id("jobs-view")
    await expect(view.get_by_test_id("filter-label")).to_have_value("run:x")
    await expect(view.get_by_test_id("job-row")).to_have_count(4)
    await expect(row(page, other["id"])).to_have_count(0)
    cancel_all = view.get_by_test_id("bulk-cancel")
    await expect(cancel_all).to_have_text("Cancel all 4 matching")
    await expect(view.get_by_test_id("bulk-retry")).to_have_text("Retry all 4 matching")

    # it asks first, with N; keeping them changes nothing
    await cancel_all.click()
    dialog = page.get_by_test_id("confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Cancel 3 jobs?")
    await expect(dialog).to_contain_text("4 jobs match these filters; 3 can be cancelled.")
    await screenshot(page, "bulk-cancel-confirm")
    await dialog.get_by_test_id("confirm-cancel").click()
    await expect(dialog).to_be_hidden()
    assert await _statuses(client, "run:x") == ["cancelled", "scheduled", "scheduled", "scheduled"]

    await cancel_all.click()
    await confirm(page)
    result = view.get_by_test_id("bulk-result")
    await expect(result).to_have_text("3 of 4 matching jobs cancelled.")
    await expect(result).to_have_attribute("data-ok", "true")
    assert await _statuses(client, "run:x") == ["cancelled"] * 4
    assert await _statuses(client, "run:y") == ["scheduled"]
    for job in tagged:
        await expect(row(page, job["id"]).get_by_test_id("job-status")).to_have_text("cancelled")

    await view.get_by_test_id("bulk-retry").click()
    await expect(dialog).to_contain_text("Retry 4 jobs?")
    await confirm(page)
    await expect(result).to_have_text("4 of 4 matching jobs retried.")
    assert await _statuses(client, "run:x") == ["pending"] * 4
    await screenshot(page, "bulk-retried")

    # the label input filters the list and the count; a malformed one says so
    await view.get_by_test_id("filter-label").fill("run:y")
    await expect(view.get_by_test_id("job-row")).to_have_count(1)
    await expect(cancel_all).to_have_text("Cancel all 1 matching")
    assert "label=run%3Ay" in page.url
    await view.get_by_test_id("filter-label").fill("run:y, nocolon")
    await expect(view.get_by_test_id("label-error")).to_contain_text('"nocolon" is not a label filter')
    # no filter: no bulk action on everything
    await view.get_by_test_id("filter-label").fill("")
    await expect(view.get_by_test_id("job-row")).to_have_count(5)
    await expect(view.get_by_test_id("bulk-bar")).to_be_hidden()
