"""`jobwire batch submit FILE.jsonl [--wait]`, `jobwire batch watch ID`, `jobwire batch cancel ID`:
many jobs as one batch, followed with one aggregate progress bar."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from jobwire.batch import MAX_JOBS
from jobwire.cli.watch import EXIT_FAILED, EXIT_OK, ClientError, _client, _console, shown, visible
from jobwire.client import Client
from jobwire.resources import Batch

# how often --wait reads the batch: its counts and progress are one small answer
POLL_S = 0.5


class BatchInterrupted(Exception):
    """Ctrl-C while following a batch: its jobs go on."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(batch_id)
        self.batch_id = batch_id


def read_jobs(path: str) -> list[dict[str, Any]]:
    """One job per line (a submission's body: type, params, priority, labels, depends_on, …); blank
    lines are skipped; `-` reads standard input."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ClientError(f"{path} is not UTF-8 text") from None
    jobs: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as exc:
            raise ClientError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(job, dict):
            raise ClientError(f'{path}:{number}: a job is a JSON object, e.g. {{"type": "demo.sleep"}}')
        jobs.append(job)
    if not jobs:
        raise ClientError(f"{path} holds no job (one JSON object per line)")
    if len(jobs) > MAX_JOBS:
        raise ClientError(f"{path} holds {len(jobs)} jobs; a batch holds at most {MAX_JOBS}")
    return jobs


def parse_labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"--label takes key=value, not {pair!r}")
        labels[key] = value
    return labels


def _counts_text(batch: Batch) -> str:
    counts = batch.counts.model_dump()
    return " ".join(f"{name} {n}" for name, n in counts.items() if n)


def follow(client: Client, batch: Batch, *, as_json: bool, console: Console) -> Batch:
    """Follow a batch to its end with one progress bar (its jobs' mean progress) and its counts."""
    quiet = as_json or not console.is_terminal
    try:
        with Progress(
            TextColumn("{task.fields[status]:>9}", markup=False),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}", markup=False),
            console=console,
            disable=quiet,
        ) as progress:
            bar = progress.add_task(
                "batch", total=100, status=batch.status, counts="", completed=int(batch.progress)
            )
            last = ""
            while True:
                text = _counts_text(batch)
                progress.update(bar, completed=batch.progress, status=visible(batch.status), counts=text)
                if quiet and not as_json and text != last:
                    console.print(shown(f"{batch.status:>9} {batch.progress:5.1f}% {text}"))
                last = text
                if batch.finished_at is not None:
                    return batch
                time.sleep(POLL_S)
                batch = client.get_batch(batch.id)
    except KeyboardInterrupt:
        raise BatchInterrupted(batch.id) from None


def _finish(batch: Batch, *, as_json: bool, console: Console) -> int:
    if as_json:
        print(batch.model_dump_json())
    else:
        colour = "green" if batch.status == "completed" and not batch.counts.failed else "red"
        console.print(
            Text.assemble((visible(batch.status), colour), " ", shown(f"{batch.id}: {_counts_text(batch)}"))
        )
        print(batch.id)  # for scripts: the batch id alone on stdout
    ok = batch.status == "completed" and batch.counts.failed == 0 and batch.counts.cancelled == 0
    return EXIT_OK if ok else EXIT_FAILED


def submit(
    path: str,
    *,
    wait: bool,
    as_json: bool,
    webhook_url: str | None,
    labels: list[str],
    idempotency_key: str | None,
) -> int:
    jobs = read_jobs(path)
    console = _console(stderr=not as_json)
    with _client() as client:
        batch = client.submit_batch(
            jobs, webhook_url=webhook_url, labels=parse_labels(labels), idempotency_key=idempotency_key
        )
        if not wait:
            if as_json:
                print(batch.model_dump_json())
            else:
                console.print(shown(f"submitted batch {batch.id} ({batch.total} jobs)"))
                print(batch.id)
            return EXIT_OK
        return _finish(
            follow(client, batch, as_json=as_json, console=console), as_json=as_json, console=console
        )


def watch(batch_id: str, *, as_json: bool) -> int:
    console = _console(stderr=not as_json)
    with _client() as client:
        batch = client.get_batch(batch_id)
        return _finish(
            follow(client, batch, as_json=as_json, console=console), as_json=as_json, console=console
        )


def cancel(batch_id: str, *, as_json: bool) -> int:
    console = _console(stderr=not as_json)
    with _client() as client:
        batch = client.cancel_batch(batch_id)
    if as_json:
        print(batch.model_dump_json())
    else:
        console.print(shown(f"cancelled batch {batch.id}: {_counts_text(batch)}"))
    return EXIT_OK
