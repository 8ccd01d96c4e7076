"""The request and answer models of service.schemas against the vocabulary they spell out."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from jobwire import events, job
from service import schemas


def test_the_literals_list_the_values_of_jobwire_in_its_order() -> None:
    assert list(get_args(schemas.Status)) == [s.value for s in job.Status]
    assert list(get_args(schemas.EventType)) == [e.value for e in events.EventType]
    assert list(get_args(schemas.Job.model_fields["priority"].annotation)) == [p.value for p in job.Priority]
    # the document's enum keeps its order; the names are those jobwire delivers
    assert sorted(get_args(schemas.WebhookEvent)) == sorted(events.WEBHOOK_EVENT_NAMES)
    assert sorted(get_args(schemas.JobWebhookEvent)) == sorted(events.WEBHOOK_EVENTS.values())
    assert list(get_args(schemas.BatchWebhookEvent)) == list(events.BATCH_WEBHOOK_EVENTS.values())


def test_an_endpoint_receives_the_terminal_events_by_default() -> None:
    endpoint = schemas.CreateEndpoint(url="https://example.com/hook")
    assert endpoint.events == list(events.DEFAULT_WEBHOOK_EVENTS)
    assert endpoint.events == ["job.completed", "job.failed", "job.cancelled"]  # as API.md lists them


def test_endpoint_events_are_webhook_event_names_each_listed_once() -> None:
    # as the handlers validate bodies: from parsed JSON
    every = list(events.WEBHOOK_EVENT_NAMES)
    url = "https://example.com/hook"
    assert schemas.CreateEndpoint.model_validate({"url": url, "events": every}).events == every
    assert schemas.UpdateEndpoint.model_validate({"events": every}).events == every
    for bad in (["job.created"], ["job.completed", "job.completed"], []):
        with pytest.raises(ValidationError):
            schemas.CreateEndpoint.model_validate({"url": url, "events": bad})
        with pytest.raises(ValidationError):
            schemas.UpdateEndpoint.model_validate({"events": bad})


def test_a_submission_names_its_webhook_url_canonically() -> None:
    sub = schemas.SubmitJob(type="demo.sleep", webhook_url="HTTPS://Example.COM/hook")
    assert sub.priority == job.Priority.NORMAL and sub.params == {}
    assert sub.webhook_url == "https://example.com/hook"
    with pytest.raises(ValidationError):
        schemas.SubmitJob(type="demo.sleep", webhook_url="ftp://example.com/")


def test_depends_on_is_a_list_of_distinct_ids_of_bounded_length() -> None:
    a, b = "01234567-89ab-7def-8123-456789abcdef", "01234567-89ab-7def-8123-456789abcde0"
    sub = schemas.SubmitJob.model_validate({"type": "demo.sum", "depends_on": [a, b, a]})
    assert [str(d) for d in sub.depends_on] == [a, b]  # in order, each once
    assert schemas.SubmitJob.model_validate({"type": "demo.sum"}).depends_on == []
    with pytest.raises(ValidationError) as bad:
        schemas.SubmitJob.model_validate({"type": "demo.sum", "depends_on": [a, "nope"]})
    assert bad.value.errors()[0]["loc"] == ("depends_on", 1)
    with pytest.raises(ValidationError) as long:
        schemas.SubmitJob.model_validate({"type": "demo.sum", "depends_on": [a] * 101})
    assert long.value.errors()[0]["loc"] == ("depends_on",)
