"""The access log of a real `jobwire api` process: every request's line reaches its log file, within
the flush interval while it serves and all of them when it stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson

from jobwire.config import Settings
from service.access_log import FLUSH_S
from tests.conftest import eventually, new_key
from tests.integration.test_streams_faults import ApiProcess


def request_lines(log: Path) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    return [line for line in lines if line["event"] == "request"]


async def test_every_request_is_logged_while_serving_and_at_stop(settings: Settings, tmp_path: Path) -> None:
    api = ApiProcess(settings, tmp_path, "api")  # JSON lines, the access log at its default (on)
    log = tmp_path / "api.log"
    try:
        await api.ready()
        key = await new_key(settings.database_url, "acme")
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            auth = {"Authorization": f"Bearer {key}"}
            answers = await asyncio.gather(*(client.get("/v1/jobs", headers=auth) for _ in range(40)))
            assert {a.status_code for a in answers} == {200}

            async def listed() -> bool:
                return len([x for x in request_lines(log) if x["path"] == "/v1/jobs"]) == 40

            # written by the timer, not by the stop
            await eventually(listed, timeout=FLUSH_S + 2, what="40 request lines while the api serves")
            assert (await client.get("/v1/jobs")).status_code == 401
    finally:
        api.stop()
    assert api.proc.returncode == 0
    lines = [x for x in request_lines(log) if x["path"] == "/v1/jobs"]
    assert len(lines) == 41  # the last one written when the api stopped
    assert [x["tenant"] for x in lines].count("acme") == 40
    assert lines[-1]["status"] == 401 and lines[-1]["tenant"] is None
    assert all(x["logger"] == "jobwire.access" and x["level"] == "info" for x in lines)
