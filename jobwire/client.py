"""The Python client of the jobwire api: `Client` (blocking) and `AsyncClient` (asyncio), on httpx.

    from jobwire import Client

    with Client("http://127.0.0.1:8000", api_key="jw_…") as jobs:
        job = jobs.submit("demo.sleep", {"seconds": 2})
        for event in jobs.follow(job.id):  # resumes after a dropped connection: no gap, no duplicate
            print(event.type, event.progress)

Answers are typed models (`jobwire.resources`); a problem document is raised as `jobwire.ApiError`.
Both clients describe each call the same way (`_Call`: method, path, body, and how to read the
answer); only the sending, and the loops of `wait` and `follow`, are written for each.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse
from pydantic import BaseModel

from jobwire.errors import ApiError, WaitTimeout
from jobwire.job import TERMINAL
from jobwire.resources import (
    Batch,
    BatchList,
    BulkResult,
    Delivery,
    DeliveryList,
    Event,
    Job,
    JobList,
    Schedule,
    ScheduleList,
)

DEFAULT_URL = "http://127.0.0.1:8000"
# the longest hold the api grants a long-poll (GET /v1/jobs/{id}?wait=)
MAX_WAIT_S = 60
# a stream is quiet at most JOBWIRE_SSE_HEARTBEAT_S (15 s by default) between heartbeats: a read
# that waits longer than this has lost its connection, and follow() reconnects
STREAM_READ_TIMEOUT_S = 60.0
# follow() reconnects for this long after its connection drops (an api restarting, a proxy timing
# out) before it gives up and raises
RECONNECT_FOR_S = 60.0
# answers that mean "not now": a stream being followed goes round again after them
_TRANSIENT = frozenset({429, 502, 503, 504})
_TERMINAL = frozenset(status.value for status in TERMINAL)

M = TypeVar("M", bound=BaseModel)


def _segment(value: str) -> str:
    # an id as one path segment, whatever the caller passed (anything not an id is a 404)
    return quote(str(value), safe="")


def raise_for_problem(response: httpx.Response) -> None:
    """ApiError for a 4xx or 5xx answer, with the fields of its problem document."""
    if response.status_code < 400:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    retry_after = response.headers.get("Retry-After")
    raise ApiError(
        response.status_code,
        type=str(problem.get("type", "about:blank")),
        title=str(problem.get("title", "")),
        detail=str(problem.get("detail", "")),
        errors=problem.get("errors") if isinstance(problem.get("errors"), list) else None,
        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


@dataclass
class _Call(Generic[M]):
    """One request and the model its answer is read as."""

    method: str
    path: str
    model: type[M]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def read(self, response: httpx.Response) -> M:
        raise_for_problem(response)
        if response.status_code == 204:
            return self.model()  # no content: the model of nothing (NoContent)
        return self.model.model_validate_json(response.content)


class NoContent(BaseModel):
    """The answer of a call that answers 204 (a delete)."""


def _submit(
    type_: str,
    params: dict[str, Any] | None,
    priority: str | None,
    webhook_url: str | None,
    idempotency_key: str | None,
    wait: int | None,
    times: dict[str, datetime | float | None],
    depends_on: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
) -> _Call[Job]:
    body: dict[str, Any] = {"type": type_, "params": params or {}}
    if depends_on:
        body["depends_on"] = list(depends_on)
    if labels:
        body["labels"] = labels
    if priority is not None:
        body["priority"] = priority
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    for name, value in times.items():  # run_at / delay_s, expires_at / ttl_s
        if value is not None:
            body[name] = value.isoformat() if isinstance(value, datetime) else value
    headers = {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if wait:
        headers["Prefer"] = f"wait={wait}"
    return _Call("POST", "/v1/jobs", Job, json=body, headers=headers)


def _list(
    status: str | list[str] | None,
    type_: str | None,
    limit: int | None,
    cursor: str | None,
    labels: dict[str, str] | None = None,
    batch_id: str | None = None,
) -> _Call[JobList]:
    query: dict[str, Any] = {}
    if batch_id:
        query["batch_id"] = batch_id
    if status:
        query["status"] = status if isinstance(status, str) else ",".join(status)
    if type_:
        query["type"] = type_
    if labels:
        query["label"] = [f"{k}:{v}" for k, v in labels.items()]
    return _Call("GET", "/v1/jobs", JobList, params={**query, **_page(limit, cursor)})


def _page(limit: int | None, cursor: str | None) -> dict[str, Any]:
    """The query of one page of a list: its size and where it starts (both optional)."""
    page: dict[str, Any] = {}
    if limit is not None:
        page["limit"] = limit
    if cursor:
        page["cursor"] = cursor
    return page


def _bulk(action: str, filter: dict[str, Any], all: bool, dry_run: bool) -> _Call[BulkResult]:
    body: dict[str, Any] = {"action": action, "filter": {}, "all": all, "dry_run": dry_run}
    for name, value in filter.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        elif name == "status":
            value = [value] if isinstance(value, str) else list(value)
        body["filter"][name] = value
    return _Call("POST", "/v1/jobs/bulk", BulkResult, json=body)


def _create_schedule(
    name: str,
    job_type: str,
    params: dict[str, Any] | None,
    timetable: dict[str, Any],
    options: dict[str, Any],
) -> _Call[Schedule]:
    job: dict[str, Any] = {"type": job_type, "params": params or {}}
    for key in ("priority", "webhook_url"):
        if options.get(key) is not None:
            job[key] = options[key]
    body: dict[str, Any] = {"name": name, "job": job}
    body.update({k: v for k, v in timetable.items() if v is not None})
    body.update({k: v for k, v in options.items() if v is not None and k not in job})
    return _Call("POST", "/v1/schedules", Schedule, json=body)


def _schedules(limit: int | None, cursor: str | None) -> _Call[ScheduleList]:
    return _Call("GET", "/v1/schedules", ScheduleList, params=_page(limit, cursor))


def _schedule(schedule_id: str) -> str:
    return f"/v1/schedules/{_segment(schedule_id)}"


def _submit_batch(
    jobs: Sequence[dict[str, Any]],
    webhook_url: str | None,
    labels: dict[str, str] | None,
    idempotency_key: str | None,
) -> _Call[Batch]:
    body: dict[str, Any] = {"jobs": list(jobs)}
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    if labels:
        body["labels"] = labels
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return _Call("POST", "/v1/batches", Batch, json=body, headers=headers)


def _batches(limit: int | None, cursor: str | None) -> _Call[BatchList]:
    return _Call("GET", "/v1/batches", BatchList, params=_page(limit, cursor))


def _batch(batch_id: str) -> str:
    return f"/v1/batches/{_segment(batch_id)}"


class _Poll:
    """The state of wait(): the job as last read and its ETag, and the deadline."""

    def __init__(self, job_id: str, timeout: float | None) -> None:
        self.path = f"/v1/jobs/{_segment(job_id)}"
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.job: Job | None = None
        self.etag: str | None = None

    def done(self) -> bool:
        return self.job is not None and self.job.status in _TERMINAL

    def request(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The query and headers of the next read: a long-poll held until the job changes."""
        if self.job is None or self.etag is None:
            return {}, {}
        hold = MAX_WAIT_S
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(self.job)
            hold = max(1, min(MAX_WAIT_S, math.ceil(remaining)))
        return {"wait": hold}, {"If-None-Match": self.etag}

    def read(self, response: httpx.Response) -> None:
        if response.status_code == 304:
            return  # the hold ended without a change
        raise_for_problem(response)
        self.job = Job.model_validate_json(response.content)
        self.etag = response.headers.get("ETag")


class _Cursor:
    """The state of follow(): the last event seen, so that a reconnect resumes after it (Last-Event-ID)
    and an event seen before is never handed out twice; the end at the terminal event."""

    def __init__(self, job_id: str, after: int) -> None:
        self.path = f"/v1/jobs/{_segment(job_id)}/events"
        self.seq = after
        self._done = False
        self.failing_since: float | None = None

    def done(self) -> bool:
        return self._done

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": str(self.seq)} if self.seq else {}

    def opened(self, response: httpx.Response) -> bool:
        """Whether the stream opened; False when there is nothing more to read (204)."""
        if response.status_code == 204:
            self._done = True
            return False
        raise_for_problem(response)
        return True

    def admit(self, sse: ServerSentEvent) -> Event | None:
        if not sse.data:
            return None
        event = Event.model_validate_json(sse.data)
        if event.seq <= self.seq:
            return None
        self.seq = event.seq
        self.failing_since = None  # a stream that delivers is healthy again
        self._done = event.type in _TERMINAL  # the terminal events are named for their status
        return event

    def lost(self, exc: Exception) -> float:
        """The pause before reconnecting after `exc`; raises it once the stream has been failing
        longer than RECONNECT_FOR_S, or when it is not a passing trouble."""
        if isinstance(exc, ApiError) and exc.status not in _TRANSIENT:
            raise exc
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
            return 0.0  # the first drop: reconnect at once
        if now - self.failing_since > RECONNECT_FOR_S:
            raise exc
        retry_after = exc.retry_after if isinstance(exc, ApiError) else None
        return min(retry_after or 1.0, 5.0)


def _job_types(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """The job types of the api's OpenAPI document (`x-job-types`), each with its params' JSON
    schema in place of the reference."""
    raise_for_problem(response)
    doc = response.json()
    schemas = doc.get("components", {}).get("schemas", {})
    out: dict[str, dict[str, Any]] = {}
    for name, info in doc.get("x-job-types", {}).items():
        ref = info.get("params", {}).get("$ref", "")
        out[name] = {**info, "params": schemas.get(ref.rsplit("/", 1)[-1], {})}
    return out


def _with_read(timeout: httpx.Timeout, read: float | None) -> httpx.Timeout:
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


def _held(timeout: httpx.Timeout, hold_s: float) -> httpx.Timeout:
    """The timeout of a request the api may hold `hold_s` seconds before it answers."""
    return timeout if timeout.read is None else _with_read(timeout, timeout.read + hold_s)


def _settings(url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    base = (url or os.environ.get("JOBWIRE_URL") or DEFAULT_URL).rstrip("/")
    key = api_key or os.environ.get("JOBWIRE_API_KEY")
    if not key:
        raise ValueError("no API key: pass api_key= or set JOBWIRE_API_KEY")
    return base, {"Authorization": f"Bearer {key}"}


class Client:
    """The blocking client. `url` and `api_key` default to $JOBWIRE_URL and $JOBWIRE_API_KEY."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base, headers = _settings(url, api_key)
        self.url = base
        self._http = httpx.Client(base_url=base, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, call: _Call[M], timeout: httpx.Timeout | None = None) -> M:
        response = self._http.request(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            headers=call.headers,
            timeout=timeout or self._http.timeout,
        )
        return call.read(response)

    def _held_timeout(self, hold_s: float) -> httpx.Timeout:
        return _held(self._http.timeout, hold_s)

    def submit(
        self,
        type: str,
        params: dict[str, Any] | None = None,
        *,
        priority: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: int | None = None,
        run_at: datetime | None = None,
        delay_s: float | None = None,
        expires_at: datetime | None = None,
        ttl_s: float | None = None,
        depends_on: Sequence[str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Job:
        """Submit a job; `wait`: hold the answer up to that many seconds for the job to end; `run_at`
        or `delay_s` delay it, `expires_at` or `ttl_s` give up on it if it has not started by then;
        `depends_on`: ids of jobs that must complete first (it is `waiting` until then); `labels`
        tag it (filter lists and bulk actions by them)."""
        times = {"run_at": run_at, "delay_s": delay_s, "expires_at": expires_at, "ttl_s": ttl_s}
        call = _submit(type, params, priority, webhook_url, idempotency_key, wait, times, depends_on, labels)
        return self._call(call, self._held_timeout(wait or 0))

    def get(self, job_id: str) -> Job:
        return self._call(_Call("GET", f"/v1/jobs/{_segment(job_id)}", Job))

    def list(
        self,
        *,
        status: str | list[str] | None = None,
        type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        labels: dict[str, str] | None = None,
        batch_id: str | None = None,
    ) -> JobList:
        """One page of jobs, newest first; pass `next_cursor` back as `cursor` for the next. `labels`:
        only jobs carrying every one of them; `batch_id`: only the jobs of that batch."""
        return self._call(_list(status, type, limit, cursor, labels, batch_id))

    def submit_batch(
        self,
        jobs: Sequence[dict[str, Any]],
        *,
        webhook_url: str | None = None,
        labels: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Batch:
        """Submit up to 1,000 jobs as one batch, all or nothing. Each job is a submission's body
        (`type`, `params`, `priority`, `labels`, …) and may list in `depends_on` the indexes of
        earlier jobs of the batch or ids of existing jobs."""
        return self._call(_submit_batch(jobs, webhook_url, labels, idempotency_key))

    def get_batch(self, batch_id: str) -> Batch:
        return self._call(_Call("GET", _batch(batch_id), Batch))

    def list_batches(self, *, limit: int | None = None, cursor: str | None = None) -> BatchList:
        """One page of batches, newest first; pass `next_cursor` back as `cursor` for the next."""
        return self._call(_batches(limit, cursor))

    def cancel_batch(self, batch_id: str) -> Batch:
        """Cancel every unfinished job of the batch (running ones are interrupted)."""
        return self._call(_Call("POST", _batch(batch_id) + "/cancel", Batch))

    def cancel(self, job_id: str) -> Job:
        return self._call(_Call("POST", f"/v1/jobs/{_segment(job_id)}/cancel", Job))

    def retry(self, job_id: str) -> Job:
        return self._call(_Call("POST", f"/v1/jobs/{_segment(job_id)}/retry", Job))

    def bulk(
        self,
        action: str,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        labels: dict[str, str] | None = None,
        batch_id: str | None = None,
        schedule_id: str | None = None,
        created_before: datetime | None = None,
        tenant: str | None = None,
        all: bool = False,
        dry_run: bool = False,
    ) -> BulkResult:
        """`action` ("cancel" or "retry") every job matching the filter (all of it must hold; an
        empty filter needs `all=True`); `dry_run` only counts. An admin key names the `tenant`."""
        f: dict[str, Any] = {"status": status, "type": type, "label": labels, "batch_id": batch_id}
        f |= {"schedule_id": schedule_id, "created_before": created_before, "tenant": tenant}
        return self._call(_bulk(action, f, all, dry_run))

    def deliveries(self, job_id: str) -> DeliveryList:
        return self._call(_Call("GET", f"/v1/jobs/{_segment(job_id)}/deliveries", DeliveryList))

    def redeliver(self, delivery_id: str) -> Delivery:
        return self._call(_Call("POST", f"/v1/deliveries/{_segment(delivery_id)}/redeliver", Delivery))

    def job_types(self) -> dict[str, dict[str, Any]]:
        """The job types the api runs: description, timeout_s, max_attempts and the params' schema."""
        return _job_types(self._http.get("/openapi.json"))

    # ---- schedules ------------------------------------------------------------------------------

    def create_schedule(
        self,
        name: str,
        job_type: str,
        params: dict[str, Any] | None = None,
        *,
        cron: str | None = None,
        interval_s: float | None = None,
        timezone: str | None = None,
        priority: str | None = None,
        webhook_url: str | None = None,
        overlap: str | None = None,
        paused: bool | None = None,
        description: str | None = None,
    ) -> Schedule:
        """A schedule submitting a `job_type` job on a `cron` timetable (in `timezone`) or every
        `interval_s` seconds: one of the two."""
        timetable: dict[str, Any] = {"cron": cron, "interval_s": interval_s, "timezone": timezone}
        options: dict[str, Any] = {"priority": priority, "webhook_url": webhook_url, "overlap": overlap}
        options |= {"paused": paused, "description": description}
        return self._call(_create_schedule(name, job_type, params, timetable, options))

    def schedules(self, *, limit: int | None = None, cursor: str | None = None) -> ScheduleList:
        """One page of schedules, newest first; pass `next_cursor` back as `cursor` for the next."""
        return self._call(_schedules(limit, cursor))

    def get_schedule(self, schedule_id: str) -> Schedule:
        return self._call(_Call("GET", _schedule(schedule_id), Schedule))

    def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change a schedule's fields (API.md), e.g. `paused=True`, `cron="0 4 * * *"`."""
        return self._call(_Call("PATCH", _schedule(schedule_id), Schedule, json=changes))

    def trigger_schedule(self, schedule_id: str) -> Job:
        """Submit the schedule's job now."""
        return self._call(_Call("POST", _schedule(schedule_id) + "/trigger", Job))

    def delete_schedule(self, schedule_id: str) -> None:
        self._call(_Call("DELETE", _schedule(schedule_id), NoContent))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it has ended (long-polls: one request per change, none in between); raises
        WaitTimeout (a TimeoutError) after `timeout` seconds."""
        poll = _Poll(job_id, timeout)
        while not poll.done():
            query, headers = poll.request()
            hold = query.get("wait", 0)
            poll.read(
                self._http.get(poll.path, params=query, headers=headers, timeout=self._held_timeout(hold))
            )
        assert poll.job is not None
        return poll.job

    def follow(self, job_id: str, *, after: int = 0) -> Iterator[Event]:
        """The job's events from the one after seq `after` up to its terminal event. A dropped
        connection is resumed where it stopped (no gap, no duplicate)."""
        cursor = _Cursor(job_id, after)
        timeout = _with_read(self._http.timeout, STREAM_READ_TIMEOUT_S)
        while not cursor.done():
            try:
                with connect_sse(
                    self._http, "GET", cursor.path, headers=cursor.headers(), timeout=timeout
                ) as source:
                    if not cursor.opened(_read_problem(source.response)):
                        return
                    for sse in source.iter_sse():
                        event = cursor.admit(sse)
                        if event is not None:
                            yield event
                        if cursor.done():
                            return
                    raise httpx.RemoteProtocolError("the stream ended before the job did")  # reconnect
            except (httpx.TransportError, ApiError) as exc:
                time.sleep(cursor.lost(exc))


def _read_problem(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        response.read()
    return response


async def _aread_problem(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        await response.aread()
    return response


class AsyncClient:
    """The asyncio client: the same calls as Client, awaited (`follow` is an async iterator)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base, headers = _settings(url, api_key)
        self.url = base
        self._http = httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, call: _Call[M], timeout: httpx.Timeout | None = None) -> M:
        response = await self._http.request(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            headers=call.headers,
            timeout=timeout or self._http.timeout,
        )
        return call.read(response)

    def _held_timeout(self, hold_s: float) -> httpx.Timeout:
        return _held(self._http.timeout, hold_s)

    async def submit(
        self,
        type: str,
        params: dict[str, Any] | None = None,
        *,
        priority: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: int | None = None,
        run_at: datetime | None = None,
        delay_s: float | None = None,
        expires_at: datetime | None = None,
        ttl_s: float | None = None,
        depends_on: Sequence[str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Job:
        times = {"run_at": run_at, "delay_s": delay_s, "expires_at": expires_at, "ttl_s": ttl_s}
        call = _submit(type, params, priority, webhook_url, idempotency_key, wait, times, depends_on, labels)
        return await self._call(call, self._held_timeout(wait or 0))

    async def get(self, job_id: str) -> Job:
        return await self._call(_Call("GET", f"/v1/jobs/{_segment(job_id)}", Job))

    async def list(
        self,
        *,
        status: str | list[str] | None = None,
        type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        labels: dict[str, str] | None = None,
        batch_id: str | None = None,
    ) -> JobList:
        return await self._call(_list(status, type, limit, cursor, labels, batch_id))

    async def submit_batch(
        self,
        jobs: Sequence[dict[str, Any]],
        *,
        webhook_url: str | None = None,
        labels: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Batch:
        return await self._call(_submit_batch(jobs, webhook_url, labels, idempotency_key))

    async def get_batch(self, batch_id: str) -> Batch:
        return await self._call(_Call("GET", _batch(batch_id), Batch))

    async def list_batches(self, *, limit: int | None = None, cursor: str | None = None) -> BatchList:
        return await self._call(_batches(limit, cursor))

    async def cancel_batch(self, batch_id: str) -> Batch:
        return await self._call(_Call("POST", _batch(batch_id) + "/cancel", Batch))

    async def cancel(self, job_id: str) -> Job:
        return await self._call(_Call("POST", f"/v1/jobs/{_segment(job_id)}/cancel", Job))

    async def retry(self, job_id: str) -> Job:
        return await self._call(_Call("POST", f"/v1/jobs/{_segment(job_id)}/retry", Job))

    async def bulk(
        self,
        action: str,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        labels: dict[str, str] | None = None,
        batch_id: str | None = None,
        schedule_id: str | None = None,
        created_before: datetime | None = None,
        tenant: str | None = None,
        all: bool = False,
        dry_run: bool = False,
    ) -> BulkResult:
        f: dict[str, Any] = {"status": status, "type": type, "label": labels, "batch_id": batch_id}
        f |= {"schedule_id": schedule_id, "created_before": created_before, "tenant": tenant}
        return await self._call(_bulk(action, f, all, dry_run))

    async def deliveries(self, job_id: str) -> DeliveryList:
        return await self._call(_Call("GET", f"/v1/jobs/{_segment(job_id)}/deliveries", DeliveryList))

    async def redeliver(self, delivery_id: str) -> Delivery:
        return await self._call(_Call("POST", f"/v1/deliveries/{_segment(delivery_id)}/redeliver", Delivery))

    async def job_types(self) -> dict[str, dict[str, Any]]:
        return _job_types(await self._http.get("/openapi.json"))

    # ---- schedules ------------------------------------------------------------------------------

    async def create_schedule(
        self,
        name: str,
        job_type: str,
        params: dict[str, Any] | None = None,
        *,
        cron: str | None = None,
        interval_s: float | None = None,
        timezone: str | None = None,
        priority: str | None = None,
        webhook_url: str | None = None,
        overlap: str | None = None,
        paused: bool | None = None,
        description: str | None = None,
    ) -> Schedule:
        """A schedule submitting a `job_type` job on a `cron` timetable (in `timezone`) or every
        `interval_s` seconds: one of the two."""
        timetable: dict[str, Any] = {"cron": cron, "interval_s": interval_s, "timezone": timezone}
        options: dict[str, Any] = {"priority": priority, "webhook_url": webhook_url, "overlap": overlap}
        options |= {"paused": paused, "description": description}
        return await self._call(_create_schedule(name, job_type, params, timetable, options))

    async def schedules(self, *, limit: int | None = None, cursor: str | None = None) -> ScheduleList:
        """One page of schedules, newest first; pass `next_cursor` back as `cursor` for the next."""
        return await self._call(_schedules(limit, cursor))

    async def get_schedule(self, schedule_id: str) -> Schedule:
        return await self._call(_Call("GET", _schedule(schedule_id), Schedule))

    async def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change a schedule's fields (API.md), e.g. `paused=True`, `cron="0 4 * * *"`."""
        return await self._call(_Call("PATCH", _schedule(schedule_id), Schedule, json=changes))

    async def trigger_schedule(self, schedule_id: str) -> Job:
        """Submit the schedule's job now."""
        return await self._call(_Call("POST", _schedule(schedule_id) + "/trigger", Job))

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._call(_Call("DELETE", _schedule(schedule_id), NoContent))

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        poll = _Poll(job_id, timeout)
        while not poll.done():
            query, headers = poll.request()
            hold = query.get("wait", 0)
            poll.read(
                await self._http.get(
                    poll.path, params=query, headers=headers, timeout=self._held_timeout(hold)
                )
            )
        assert poll.job is not None
        return poll.job

    async def follow(self, job_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        cursor = _Cursor(job_id, after)
        timeout = _with_read(self._http.timeout, STREAM_READ_TIMEOUT_S)
        while not cursor.done():
            try:
                async with aconnect_sse(
                    self._http, "GET", cursor.path, headers=cursor.headers(), timeout=timeout
                ) as source:
                    if not cursor.opened(await _aread_problem(source.response)):
                        return
                    async for sse in source.aiter_sse():
                        event = cursor.admit(sse)
                        if event is not None:
                            yield event
                        if cursor.done():
                            return
                    raise httpx.RemoteProtocolError("the stream ended before the job did")  # reconnect
            except (httpx.TransportError, ApiError) as exc:
                await asyncio.sleep(cursor.lost(exc))


__all__ = ["AsyncClient", "Client", "raise_for_problem"]
