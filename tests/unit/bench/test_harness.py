"""bench.harness: reading wrk's report, and the request script wrk runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from bench.harness import (
    NOOP_BODY,
    POST_SCRIPT,
    free_port,
    logged_problems,
    parse_wrk,
    post_env,
    require_wrk,
    run_wrk,
)

WRK = """Running 8s test @ http://127.0.0.1:8000/v1/jobs
  2 threads and 64 connections
  Latency Distribution
     50%   10.77ms
     75%   12.00ms
     90%   14.00ms
     99%    1.02s
  46656 requests in 8.00s, 10.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   5832.10
Transfer/sec:      1.25MB
bench-non2xx: 5
bench-status: 429 3
bench-status: 503 2
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    r = parse_wrk(WRK)
    assert r.requests_per_s == 5832.10
    assert r.p50_ms == 10.77 and r.p99_ms == 1020.0
    assert r.socket_errors == 3
    assert r.non_2xx == 5  # the script's own count, which wrk's line undercounts
    assert r.statuses == {429: 3, 503: 2}


def test_parse_wrk_refuses_output_without_a_rate() -> None:
    with pytest.raises(SystemExit, match="Requests/sec"):
        parse_wrk("wrk: connection refused\n")


def test_logged_problems_keeps_warnings_errors_and_tracebacks(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_text(
        '{"event":"request","level":"info"}\n'
        '{"event":"redis unavailable","level":"warning"}\n'
        "Traceback (most recent call last):\n"
        '{"event":"job failed","level":"error"}\n'
    )
    assert logged_problems(path) == [
        '{"event":"redis unavailable","level":"warning"}',
        "Traceback (most recent call last):",
        '{"event":"job failed","level":"error"}',
    ]


async def test_the_request_script_sends_its_body_and_key_and_counts_refusals() -> None:
    """bench/post.lua, run by wrk against a server that refuses every fifth request."""
    seen: list[tuple[str, str, bytes]] = []

    async def jobs(request: web.Request) -> web.Response:
        seen.append((request.headers["Authorization"], request.content_type, await request.read()))
        return web.Response(status=429 if len(seen) % 5 == 0 else 202)

    app = web.Application()
    app.router.add_post("/v1/jobs", jobs)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        url = f"http://127.0.0.1:{port}/v1/jobs"
        env = post_env("jw_test_key", NOOP_BODY)
        result = await asyncio.to_thread(run_wrk, require_wrk(), url, 2, 1, POST_SCRIPT, env)
    finally:
        await runner.cleanup()
    assert seen and set(seen) == {("Bearer jw_test_key", "application/json", NOOP_BODY.encode())}
    # wrk may leave its last requests unanswered when its time is up: they are not counted
    refused = len(seen) // 5
    assert refused - 2 <= result.non_2xx <= refused
    assert result.statuses == {429: result.non_2xx}
