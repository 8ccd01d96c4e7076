"""service.access_log: the access log's lines are structlog's lines, written late by at most FLUSH_S."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import orjson
import pytest

from jobwire import logs
from service.access_log import AccessLog

pytestmark = pytest.mark.usefixtures("restore_logging")


def lines(err: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in err.splitlines() if line.strip()]


async def test_json_lines_are_written_together_within_the_flush_interval(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json", "info")
    access = AccessLog(True, flush_s=0.2)
    before = time.time()
    access.record("POST", "/v1/jobs", 202, 1.25, "acme")
    access.record("GET", "/v1/jobs/x", 404, 0.5, None)
    await asyncio.sleep(0.05)
    assert capfd.readouterr().err == ""  # held, not yet written
    await asyncio.sleep(0.3)
    [submitted, missing] = lines(capfd.readouterr().err)
    assert submitted == {
        "method": "POST",
        "path": "/v1/jobs",
        "status": 202,
        "duration_ms": 1.25,
        "tenant": "acme",
        "event": "request",
        "logger": "jobwire.access",
        "level": "info",
        "timestamp": submitted["timestamp"],
    }
    assert missing["status"] == 404 and missing["tenant"] is None
    # the request's own time, not the write's (which came 0.2 s later)
    stamp = datetime.fromisoformat(str(submitted["timestamp"]).replace("Z", "+00:00"))
    assert abs(stamp.timestamp() - before) < 0.1


async def test_a_line_has_the_keys_structlog_writes_in_its_order(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    logs.get_logger("jobwire.access").info(
        "request", method="GET", path="/healthz", status=200, duration_ms=0.1, tenant=None
    )
    access = AccessLog(True)
    access.record("GET", "/healthz", 200, 0.1, None)
    access.flush()
    [by_structlog, by_access_log] = lines(capfd.readouterr().err)
    assert list(by_access_log) == list(by_structlog)
    del by_structlog["timestamp"], by_access_log["timestamp"]
    assert by_access_log == by_structlog


async def test_a_full_batch_is_written_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    access = AccessLog(True, flush_s=60, max_pending=3)
    for status in (200, 201, 202):
        access.record("GET", "/v1/jobs", status, 0.1, "acme")
    assert [line["status"] for line in lines(capfd.readouterr().err)] == [200, 201, 202]
    access.record("GET", "/v1/jobs", 204, 0.1, "acme")
    access.flush()  # what the api does when it stops, and the timer is cancelled with it
    assert [line["status"] for line in lines(capfd.readouterr().err)] == [204]
    await asyncio.sleep(0)
    access.flush()
    assert capfd.readouterr().err == ""


async def test_above_info_or_switched_off_nothing_is_written(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "warning")
    assert not AccessLog(True).enabled
    logs.configure("json", "info")
    off = AccessLog(False)
    assert not off.enabled
    off.record("GET", "/v1/jobs", 200, 0.1, "acme")
    off.flush()
    assert capfd.readouterr().err == ""


async def test_console_lines_are_written_at_once_as_text(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("console", "info")
    AccessLog(True).record("POST", "/v1/jobs", 202, 1.5, "acme")
    err = capfd.readouterr().err
    assert "request" in err and "/v1/jobs" in err and "acme" in err and not err.startswith("{")
