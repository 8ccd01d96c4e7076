"""`jobwire jobs cancel|retry`: a bulk action on every job matching a filter, through the HTTP api
(JOBWIRE_URL, JOBWIRE_API_KEY) with the Python client. Unless told --yes (or --dry-run, which
only counts), it counts first and asks before it changes anything."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from jobwire.cli.watch import EXIT_FAILED, EXIT_OK, ClientError, _client, _console, shown
from jobwire.resources import BulkResult

_DONE = {"cancel": "cancelled", "retry": "retried"}


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """`k=v` pairs (the api validates keys and values)."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"--label takes key=value, not {pair!r}")
        if key in labels and labels[key] != value:
            raise ClientError(f"--label {key} is given twice: a job has one value per key")
        labels[key] = value
    return labels


def _print(result: BulkResult, action: str, *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"matched": result.matched, "changed": result.changed, "dry_run": dry_run}))
        return
    verb = f"would be {_DONE[action]}" if dry_run else _DONE[action]
    print(f"{result.matched} matching, {result.changed} {verb}")


def bulk(
    action: str,
    *,
    statuses: list[str],
    job_type: str | None,
    labels: dict[str, str],
    batch_id: str | None,
    schedule_id: str | None,
    created_before: datetime | None,
    tenant: str | None,
    every: bool,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> int:
    console = _console(stderr=True)
    filt: dict[str, Any] = {
        "status": statuses or None,
        "type": job_type,
        "labels": labels or None,
        "batch_id": batch_id,
        "schedule_id": schedule_id,
        "created_before": created_before,
        "tenant": tenant,
    }
    with _client() as client:
        if dry_run or not yes:
            counted = client.bulk(action, **filt, all=every, dry_run=True)
            if dry_run:
                _print(counted, action, dry_run=True, as_json=as_json)
                return EXIT_OK
            if counted.changed == 0:
                _print(counted, action, dry_run=False, as_json=as_json)
                return EXIT_OK
            console.print(
                shown(f"{counted.matched} jobs match; {action} {counted.changed} of them? [y/N] "), end=""
            )
            answer = sys.stdin.readline().strip().lower()
            if answer not in ("y", "yes"):
                console.print(shown("nothing changed"))
                return EXIT_FAILED
        result = client.bulk(action, **filt, all=every)
    _print(result, action, dry_run=False, as_json=as_json)
    return EXIT_OK
