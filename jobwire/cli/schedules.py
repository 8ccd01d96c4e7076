"""`jobwire schedules list|create|pause|resume|trigger|delete`: schedules through the HTTP api
(JOBWIRE_URL, JOBWIRE_API_KEY), like submit and watch. Everything a tenant wrote (names,
descriptions, cron expressions, zones) is printed as text, never interpreted by the terminal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from rich.table import Table

from jobwire.cli.watch import (
    EXIT_OK,
    ClientError,
    _check,
    _client,
    _console,
    _finish,
    follow,
    shown,
)


def _all(client: httpx.Client) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = _check(client.get("/v1/schedules", params=params))
        yield from page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return


def _path(client: httpx.Client, ref: str) -> str:
    """The schedule's path, from its id or its name (names are unique per tenant)."""
    try:
        return f"/v1/schedules/{uuid.UUID(ref)}"
    except ValueError:
        pass
    for s in _all(client):
        if s["name"] == ref:
            return f"/v1/schedules/{s['id']}"
    raise ClientError(f"no schedule named {ref!r}")


def timetable_text(s: dict[str, Any]) -> str:
    if s["cron"] is not None:
        return f"{s['cron']} ({s['timezone']})"
    return f"every {s['interval_s']:g} s"


def list_schedules(*, as_json: bool) -> int:
    with _client() as client:
        items = list(_all(client))
    if as_json:
        print(json.dumps(items))
        return EXIT_OK
    table = Table("id", "name", "timetable", "job", "next run", "last run", "last job", box=None)
    for s in items:
        table.add_row(
            shown(s["id"]),
            shown(s["name"]),
            shown(timetable_text(s)),
            shown(s["job"]["type"]),
            shown("paused" if s["paused"] else s["next_run_at"]),
            shown(s["last_run_at"] or "-"),
            shown(s["last_job_id"] or "-"),
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
    body: dict[str, Any] = {
        "name": name,
        "timezone": timezone,
        "job": {"type": job_type, "params": params, "priority": priority},
        "overlap": overlap,
        "paused": paused,
        "description": description,
        **({"cron": cron} if cron is not None else {"interval_s": interval_s}),
    }
    with _client() as client:
        s = _check(client.post("/v1/schedules", json=body))
    _print(s, "created", as_json=as_json)
    return EXIT_OK


def _print(s: dict[str, Any], what: str, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(s))
        return
    when = "paused" if s["paused"] else f"next run {s['next_run_at']}"
    _console(stderr=True).print(shown(f"{what} {s['name']} ({timetable_text(s)}, {when})"))
    print(s["id"])


def set_paused(ref: str, paused: bool, *, as_json: bool) -> int:
    with _client() as client:
        s = _check(client.patch(_path(client, ref), json={"paused": paused}))
    _print(s, "paused" if paused else "resumed", as_json=as_json)
    return EXIT_OK


def trigger(ref: str, *, wait: bool, as_json: bool) -> int:
    console = _console(stderr=not as_json)
    with _client() as client:
        job = _check(client.post(f"{_path(client, ref)}/trigger"))
        if not wait:
            if as_json:
                print(json.dumps(job))
            else:
                console.print(shown(f"submitted {job['id']} ({job['type']}, {job['status']})"))
                print(job["id"])
            return EXIT_OK
        return _finish(
            follow(client, job, as_json=as_json, console=console), as_json=as_json, console=console
        )


def delete(ref: str) -> int:
    with _client() as client:
        path = _path(client, ref)
        response = client.delete(path)
        if response.status_code != 204:
            _check(response)
    _console(stderr=True).print(shown(f"deleted {path.rsplit('/', 1)[1]}"))
    return EXIT_OK
