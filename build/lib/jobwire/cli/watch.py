"""`jobwire submit` and `jobwire watch`: the command-line client. Follows a job over its SSE stream
with a live progress bar, resuming with Last-Event-ID if the connection drops."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import httpx
from httpx_sse import connect_sse
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

TERMINAL = {"completed", "failed", "cancelled"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ClientError(Exception):
    """Something the user must fix or know about; printed without a traceback."""


def _base_url() -> str:
    return os.environ.get("JOBWIRE_URL", "http://127.0.0.1:8000").rstrip("/")


def _client() -> httpx.Client:
    key = os.environ.get("JOBWIRE_API_KEY")
    if not key:
        raise ClientError(
            "set JOBWIRE_API_KEY to an API key (create one with: jobwire keys create --tenant NAME)"
        )
    return httpx.Client(base_url=_base_url(), headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            problem = response.json()
            detail = problem.get("detail") or problem.get("title")
            errors = problem.get("errors") or []
        except ValueError:
            detail, errors = response.text[:200], []
        lines = [f"{response.status_code}: {detail}"]
        lines += [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors]
        raise ClientError("\n".join(lines))
    body: dict[str, Any] = response.json()
    return body


def parse_params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    """`k=v` pairs: a value that parses as JSON is taken as such (2, true, [1,2]), else as text."""
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            raise ClientError(f"--params-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ClientError("--params-json must be a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"--param takes key=value, not {pair!r}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def follow(client: httpx.Client, job: dict[str, Any], *, as_json: bool, console: Console) -> dict[str, Any]:
    """Follow a job to its end over SSE, drawing progress; returns the final job."""
    last_id: str | None = None
    quiet = as_json or not console.is_terminal
    with Progress(
        TextColumn("{task.fields[status]:>9}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
        console=console,
        disable=quiet,
        transient=False,
    ) as progress:
        bar = progress.add_task(
            job["type"], total=100, status=job["status"], message="", completed=job["progress"]
        )
        done = False
        failures = 0
        while not done:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with connect_sse(client, "GET", f"/v1/jobs/{job['id']}/events", headers=headers) as source:
                    if source.response.status_code == 204:
                        break
                    if source.response.status_code >= 400:
                        source.response.read()
                        _check(source.response)
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue
                        event = json.loads(sse.data)
                        last_id = sse.id or last_id
                        progress.update(
                            bar,
                            completed=event["progress"],
                            status=event["status"],
                            message=event["message"] or "",
                        )
                        if quiet and not as_json:
                            console.print(
                                f"{event['type']:>9} {event['progress']:5.1f}% {event['message'] or ''}"
                            )
                        if event["status"] in TERMINAL:
                            done = True
                            break
                failures = 0
            except httpx.TransportError as exc:
                failures += 1
                if failures > 10:
                    raise ClientError(f"lost the event stream: {exc}") from None
                time.sleep(min(2.0, 0.2 * failures))
            if not done and last_id is None:
                time.sleep(0.5)
    return _check(client.get(f"/v1/jobs/{job['id']}"))


def _finish(job: dict[str, Any], *, as_json: bool, console: Console) -> int:
    if as_json:
        print(json.dumps(job))
    elif job["status"] == "completed":
        console.print(f"[green]completed[/green] {job['id']}")
        print(json.dumps(job["result"], indent=2))
    else:
        error = job.get("error") or {}
        console.print(
            f"[red]{job['status']}[/red] {job['id']}: {error.get('type', '')} {error.get('message', '')}"
        )
    return EXIT_OK if job["status"] == "completed" else EXIT_FAILED


def submit(
    job_type: str,
    params: dict[str, Any],
    *,
    priority: str,
    wait: bool,
    as_json: bool,
    idempotency_key: str | None,
) -> int:
    console = Console(stderr=not as_json)
    with _client() as client:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job = _check(
            client.post(
                "/v1/jobs", json={"type": job_type, "params": params, "priority": priority}, headers=headers
            )
        )
        if not wait:
            if as_json:
                print(json.dumps(job))
            else:
                console.print(f"submitted {job['id']} ({job['type']}, {job['status']})")
                print(job["id"])
            return EXIT_OK
        return _finish(
            follow(client, job, as_json=as_json, console=console), as_json=as_json, console=console
        )


def watch(job_id: str, *, as_json: bool) -> int:
    console = Console(stderr=not as_json)
    with _client() as client:
        job = _check(client.get(f"/v1/jobs/{job_id}"))
        return _finish(
            follow(client, job, as_json=as_json, console=console), as_json=as_json, console=console
        )


def run(command: Any) -> int:
    """Run a client command, turning ClientError and connection failures into a message and exit 2."""
    try:
        return int(command())
    except ClientError as exc:
        print(f"jobwire: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except httpx.TransportError as exc:
        print(f"jobwire: cannot reach {_base_url()}: {exc}", file=sys.stderr)
        return EXIT_USAGE
