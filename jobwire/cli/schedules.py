"""`jobwire schedules list|create|pause|resume|trigger|delete`: schedules through the HTTP api
(JOBWIRE_URL, JOBWIRE_API_KEY) with the Python client, like submit and watch. Everything a tenant
wrote (names, descriptions, cron expressions, zones) is printed as text, never interpreted by the
terminal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from rich.table import Table

from jobwire.cli.watch import EXIT_OK, ClientError, _client, _console, _finish, _print_job, follow, shown
from jobwire.client import Client
from jobwire.resources import Schedule


def _all(client: Client) -> Iterator[Schedule]:
    cursor: str | None = None
    while True:
        page = client.schedules(limit=200, cursor=cursor)
        yield from page.items
        cursor = page.next_cursor
        if not cursor:
            return


def _id(client: Client, ref: str) -> str:
    """The schedule's id, from its id or its name (names are unique per tenant)."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    for s in _all(client):
        if s.name == ref:
            return s.id
    raise ClientError(f"no schedule named {ref!r}")


def timetable_text(s: Schedule) -> str:
    if s.cron is not None:
        return f"{s.cron} ({s.timezone})"
    return f"every {s.interval_s:g} s"


def _as_json(s: Schedule) -> str:
    return json.dumps(s.model_dump(mode="json"))


def list_schedules(*, as_json: bool) -> int:
    with _client() as client:
        items = list(_all(client))
    if as_json:
        print(json.dumps([s.model_dump(mode="json") for s in items]))
        return EXIT_OK
    table = Table("id", "name", "timetable", "job", "next run", "last run", "last job", box=None)
    for s in items:
        table.add_row(
            shown(s.id),
            shown(s.name),
            shown(timetable_text(s)),
            shown(s.job.type),
            shown("paused" if s.paused else s.next_run_at),
            shown(s.last_run_at or "-"),
            shown(s.last_job_id or "-"),
        )
    _console(stderr=False).print(table)
    return EXIT_OK


def create(
    name: str,
    job_type: str,
    params: dict[str, Any],
    *,
    cron: str | None,
    interval_s: float | None,
    timezone: str,
    priority: str,
    overlap: str,
    paused: bool,
    description: str,
    as_json: bool,
) -> int:
    with _client() as client:
        s = client.create_schedule(
            name,
            job_type,
            params,
            cron=cron,
            interval_s=interval_s,
            timezone=timezone,
            priority=priority,
            overlap=overlap,
            paused=paused,
            description=description,
        )
    _print(s, "created", as_json=as_json)
    return EXIT_OK


def _print(s: Schedule, what: str, *, as_json: bool) -> None:
    if as_json:
        print(_as_json(s))
        return
    when = "paused" if s.paused else f"next run {s.next_run_at}"
    _console(stderr=True).print(shown(f"{what} {s.name} ({timetable_text(s)}, {when})"))
    print(s.id)


def set_paused(ref: str, paused: bool, *, as_json: bool) -> int:
    with _client() as client:
        s = client.update_schedule(_id(client, ref), paused=paused)
    _print(s, "paused" if paused else "resumed", as_json=as_json)
    return EXIT_OK


def trigger(ref: str, *, wait: bool, as_json: bool) -> int:
    console = _console(stderr=not as_json)
    with _client() as client:
        job = client.trigger_schedule(_id(client, ref))
        if not wait:
            if as_json:
                _print_job(job)
            else:
                console.print(shown(f"submitted {job.id} ({job.type}, {job.status})"))
                print(job.id)
            return EXIT_OK
        return _finish(
            follow(client, job, as_json=as_json, console=console), as_json=as_json, console=console
        )


def delete(ref: str) -> int:
    with _client() as client:
        schedule_id = _id(client, ref)
        client.delete_schedule(schedule_id)
    _console(stderr=True).print(shown(f"deleted {schedule_id}"))
    return EXIT_OK
