"""`jobwire submit`, `watch` and `types`: the command-line client, on `jobwire.Client`. Follows a job
over its SSE stream with a live progress bar (the client resumes a dropped stream with
Last-Event-ID); Ctrl-C stops following and says how to follow again."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from jobwire.client import Client
from jobwire.errors import ApiError
from jobwire.resources import Job

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# the shell's code for a command ended by SIGINT (128 + 2)
EXIT_INTERRUPTED = 130


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


def _client() -> Client:
    key = os.environ.get("JOBWIRE_API_KEY")
    if not key:
        raise ClientError(
            "set JOBWIRE_API_KEY to an API key (create one with: jobwire keys create --tenant NAME)"
        )
    return Client(_base_url(), key)


class Interrupted(Exception):
    """Ctrl-C while following a job: the job goes on, and can be followed again."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


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


def follow(client: Client, job: Job, *, as_json: bool, console: Console) -> Job:
    """Follow a job to its end over SSE, drawing progress; returns the final job. The client resumes
    a dropped stream where it stopped."""
    quiet = as_json or not console.is_terminal
    try:
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
                visible(job.type),
                total=100,
                status=visible(job.status),
                message="",
                completed=int(job.progress),
            )
            for event in client.follow(job.id):
                progress.update(
                    bar,
                    completed=event.progress,
                    status=visible(event.status),
                    message=visible(event.message or ""),
                )
                if quiet and not as_json:
                    console.print(shown(f"{event.type:>9} {event.progress:5.1f}% {event.message or ''}"))
        return client.get(job.id)
    except KeyboardInterrupt:
        raise Interrupted(job.id) from None


def _print_job(job: Job) -> None:
    print(job.model_dump_json())


def _finish(job: Job, *, as_json: bool, console: Console) -> int:
    if as_json:
        _print_job(job)
    elif job.status == "completed":
        console.print(Text.assemble(("completed", "green"), " ", shown(job.id)))
        print(json.dumps(job.result, indent=2))  # JSON escapes every control character
    else:
        error = job.error
        console.print(
            Text.assemble(
                (visible(job.status), "red"),
                " ",
                shown(f"{job.id}: {error.type if error else ''} {error.message if error else ''}"),
            )
        )
    return EXIT_OK if job.status == "completed" else EXIT_FAILED


def submit(
    job_type: str,
    params: dict[str, Any],
    *,
    priority: str,
    wait: bool,
    as_json: bool,
    idempotency_key: str | None,
    webhook_url: str | None = None,
    run_at: datetime | None = None,
    delay_s: float | None = None,
    depends_on: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> int:
    console = _console(stderr=not as_json)
    with _client() as client:
        job = client.submit(
            job_type,
            params,
            priority=priority,
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
            run_at=run_at,
            delay_s=delay_s,
            depends_on=depends_on,
            labels=labels,
        )
        if not wait:
            if as_json:
                _print_job(job)
            else:
                when = f", runs at {job.run_at}" if job.run_at else ""
                console.print(shown(f"submitted {job.id} ({job.type}, {job.status}{when})"))
                print(job.id)
            return EXIT_OK
        return _finish(
            follow(client, job, as_json=as_json, console=console), as_json=as_json, console=console
        )


def watch(job_id: str, *, as_json: bool) -> int:
    console = _console(stderr=not as_json)
    with _client() as client:
        job = client.get(job_id)
        return _finish(
            follow(client, job, as_json=as_json, console=console), as_json=as_json, console=console
        )


def types(*, as_json: bool) -> int:
    """The job types the api knows, with their params (from its OpenAPI document)."""
    with _client() as client:
        known = client.job_types()
    if as_json:
        print(json.dumps(known, indent=2))
        return EXIT_OK
    console = _console(stderr=False)
    for name, info in known.items():
        line = Text.assemble((visible(name), "bold"), " ", shown(info.get("description") or ""))
        console.print(line)
        console.print(shown(f"    timeout {info['timeout_s']} s, at most {info['max_attempts']} attempts"))
        params = info.get("params", {})
        required = set(params.get("required", []))
        for param, schema in params.get("properties", {}).items():
            kind = schema.get("type") or "any"
            default = f" = {json.dumps(schema['default'])}" if "default" in schema else ""
            note = "" if param not in required else " (required)"
            about = f"  {schema['description']}" if schema.get("description") else ""
            console.print(shown(f"    --param {param}=<{kind}>{default}{note}{about}"))
    return EXIT_OK


def run(command: Any) -> int:
    """Run a client command: its problems, connection failures and Ctrl-C become a message and an
    exit code, never a traceback."""
    try:
        return int(command())
    except Interrupted as stop:
        job_id = visible(stop.job_id)
        print(
            f"\njobwire: stopped following job {job_id}; it keeps running. Follow it again with:\n"
            f"  jobwire watch {job_id}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\njobwire: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ClientError, ApiError) as exc:
        print(f"jobwire: {visible(exc)}", file=sys.stderr)  # it may carry the server's text
        return EXIT_USAGE
    except httpx.TransportError as exc:
        print(f"jobwire: cannot reach {visible(_base_url())}: {visible(exc)}", file=sys.stderr)
        return EXIT_USAGE
