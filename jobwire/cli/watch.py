"""`jobwire submit` and `jobwire watch`: the command-line client. Follows a job over its SSE stream
with a live progress bar, resuming with Last-Event-ID if the connection drops."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import connect_sse
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from jobwire.job import TERMINAL

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ClientError(Exception):
    """Something the user must fix or know about; printed without a traceback."""


# Everything the server sends (job types, messages, results, errors) is a tenant's text, and is shown
# as text: the console interprets no markup or emoji codes, and visible() writes out the characters a
# terminal would act on (escape sequences, bells, carriage returns, bidirectional overrides).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(value: object) -> str:
    """`value` as text that does to a terminal nothing but appear: control characters as escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(value))


def shown(value: object) -> Text:
    return Text(visible(value))


def _console(*, stderr: bool) -> Console:
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


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
        TextColumn("{task.fields[status]:>9}", markup=False),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}", markup=False),
        console=console,
        disable=quiet,
        transient=False,
    ) as progress:
        bar = progress.add_task(
            visible(job["type"]),
            total=100,
            status=visible(job["status"]),
            message="",
            completed=job["progress"],
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
                            status=visible(event["status"]),
                            message=visible(event["message"] or ""),
                        )
                        if quiet and not as_json:
                            console.print(
                                shown(
                                    f"{event['type']:>9} {event['progress']:5.1f}% {event['message'] or ''}"
                                )
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
        console.print(Text.assemble(("completed", "green"), " ", shown(job["id"])))
        print(json.dumps(job["result"], indent=2))  # JSON escapes every control character
    else:
        error = job.get("error") or {}
        console.print(
            Text.assemble(
                (visible(job["status"]), "red"),
                " ",
                shown(f"{job['id']}: {error.get('type', '')} {error.get('message', '')}"),
            )
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
    run_at: str | None = None,
    delay_s: float | None = None,
) -> int:
    console = _console(stderr=not as_json)
    with _client() as client:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body: dict[str, Any] = {"type": job_type, "params": params, "priority": priority}
        if run_at is not None:
            body["run_at"] = run_at
        if delay_s is not None:
            body["delay_s"] = delay_s
        job = _check(client.post("/v1/jobs", json=body, headers=headers))
        if not wait:
            if as_json:
                print(json.dumps(job))
            else:
                when = f", runs at {job['run_at']}" if job.get("run_at") else ""
                console.print(shown(f"submitted {job['id']} ({job['type']}, {job['status']}{when})"))
                print(job["id"])
            return EXIT_OK
        return _finish(
            follow(client, job, as_json=as_json, console=console), as_json=as_json, console=console
        )


def watch(job_id: str, *, as_json: bool) -> int:
    console = _console(stderr=not as_json)
    with _client() as client:
        # the id as one path segment, whatever the user typed (a 404 for anything not an id)
        job = _check(client.get(f"/v1/jobs/{quote(job_id, safe='')}"))
        return _finish(
            follow(client, job, as_json=as_json, console=console), as_json=as_json, console=console
        )


def run(command: Any) -> int:
    """Run a client command, turning ClientError and connection failures into a message and exit 2."""
    try:
        return int(command())
    except ClientError as exc:
        print(f"jobwire: {visible(exc)}", file=sys.stderr)  # it may carry the server's text
        return EXIT_USAGE
    except httpx.TransportError as exc:
        print(f"jobwire: cannot reach {visible(_base_url())}: {visible(exc)}", file=sys.stderr)
        return EXIT_USAGE
