"""The OpenAPI document against the application's routes: every /v1 route is described, and
nothing else is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from jobwire.events import WEBHOOK_EVENT_NAMES
from jobwire.registry import load_job_types
from jobwire.resources import WebhookPayload
from service import openapi
from service.app import create_app
from tests.conftest import TEST_JOB_MODULES, make_settings
from workers.dispatcher import render_body

REGISTRY = load_job_types(TEST_JOB_MODULES)


def _app() -> web.Application:
    # building the app connects to nothing: the pools open on startup
    return create_app(make_settings("postgresql://unused/unused", "unused"), REGISTRY)


def _served(app: web.Application) -> dict[tuple[str, str], str]:
    """(path, method) -> handler name, for every /v1 route of the app."""
    return {
        (route.resource.canonical, route.method.lower()): route.handler.__name__
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1/")
        and route.method != "HEAD"
    }


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, method): op for path, methods in doc["paths"].items() for method, op in methods.items()}


def test_every_v1_route_of_the_app_is_an_operation_of_the_document_and_no_other() -> None:
    app = _app()
    served = _served(app)
    operations = _operations(openapi.build(REGISTRY, app.router.routes()))
    assert set(operations) == set(served)
    assert len(served) == 33
    for key, op in operations.items():
        assert op["operationId"] == served[key], key
        assert op["summary"] and {"401", "503"} <= set(op["responses"]), key
    ids = [op["operationId"] for op in operations.values()]
    assert len(ids) == len(set(ids))
    # no description is left over from a route the app no longer serves
    assert set(openapi.OPERATIONS) == set(served.values())


def test_every_schema_the_operations_name_is_in_the_document() -> None:
    app = _app()
    doc = openapi.build(REGISTRY, app.router.routes())
    components = doc["components"]["schemas"]
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    assert {ref.removeprefix("#/components/schemas/") for ref in refs} <= set(components)
    assert {"SubmitJob", "CreateEndpoint", "UpdateEndpoint", "Event", "SleepParams"} <= set(components)


def test_a_route_without_a_description_is_an_error_not_a_gap() -> None:
    app = _app()

    async def undocumented(request: web.Request) -> web.Response:  # pragma: no cover - never called
        return web.Response()

    app.router.add_get("/v1/undocumented/{thing_id}", undocumented)
    served_by = r"GET /v1/undocumented/\{thing_id\} is served by .*\.undocumented\(\)"
    with pytest.raises(LookupError, match=served_by):
        openapi.build(REGISTRY, app.router.routes())


def _document() -> dict[str, Any]:
    app = _app()
    return openapi.build(REGISTRY, app.router.routes(), "https://jobs.example.com")


def test_every_operation_is_tagged_and_lists_every_common_answer() -> None:
    doc = _document()
    tags = {tag["name"] for tag in doc["tags"]}
    for key, op in _operations(doc).items():
        assert len(op["tags"]) == 1 and op["tags"][0] in tags, key
        assert {"401", "422", "429", "503"} <= set(op["responses"]), key
        if "requestBody" in op:  # every route that reads a body can refuse it
            assert {"400", "413", "415"} <= set(op["responses"]), key
        if "{" in key[0]:  # every route naming a resource answers 404 for another tenant's
            assert "404" in op["responses"], key
    assert doc["servers"] == [{"url": "https://jobs.example.com", "description": "this jobwire api"}]


def test_the_stream_routes_take_the_token_parameter() -> None:
    operations = _operations(_document())
    for path in ("/v1/jobs/{job_id}/events", "/v1/events", "/v1/ws"):
        names = {(p["name"], p["in"]) for p in operations[(path, "get")]["parameters"]}
        assert ("token", "query") in names, path


def test_the_submission_body_is_one_schema_per_job_type_selected_by_type() -> None:
    components = _document()["components"]["schemas"]
    submit = components["SubmitJob"]
    assert submit["discriminator"]["propertyName"] == "type"
    mapping = submit["discriminator"]["mapping"]
    assert set(mapping) == set(REGISTRY.names())
    assert [v["$ref"] for v in submit["oneOf"]] == list(mapping.values())
    for jt in REGISTRY:
        variant = components[mapping[jt.name].removeprefix("#/components/schemas/")]
        assert variant["properties"]["type"]["const"] == jt.name
        assert variant["properties"]["params"] == {"$ref": f"#/components/schemas/{jt.params_model.__name__}"}
        assert "type" in variant["required"] and variant["additionalProperties"] is False


def test_the_webhooks_section_describes_every_event_with_its_headers() -> None:
    doc = _document()
    assert set(doc["webhooks"]) == set(WEBHOOK_EVENT_NAMES)
    for event, item in doc["webhooks"].items():
        post = item["post"]
        headers = {p["name"] for p in post["parameters"] if p["in"] == "header" and p["required"]}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        payload = doc["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
        assert payload["allOf"][1]["properties"]["type"]["const"] == event


def test_the_documented_webhook_payload_is_what_the_dispatcher_sends() -> None:
    """render_body's output validates against WebhookPayload and carries no field it does not name."""
    now = "2026-12-01T12:00:00+00:00"
    row = {
        "id": "0193a1f4-0000-7000-8000-000000000001",
        "tenant": "acme",
        "type": "demo.sleep",
        "status": "completed",
        "progress": 100.0,
        "message": None,
        "params": {"seconds": 1},
        "priority": "normal",
        "result": {"slept": 1},
        "error": None,
        "attempts": 1,
        "max_attempts": 3,
        "webhook_url": None,
        "run_at": None,
        "expires_at": None,
        "schedule_id": None,
        "created_at": now,
        "started_at": now,
        "finished_at": now,
        "updated_at": now,
    }
    body = json.loads(render_body("job.completed", row))
    payload = WebhookPayload.model_validate(body)
    assert payload.type == "job.completed" and payload.data.status == "completed"
    assert not payload.model_extra and not payload.data.model_extra
