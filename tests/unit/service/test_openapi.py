"""The OpenAPI document against the application's routes: every /v1 route is described, and
nothing else is."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from jobwire.registry import load_job_types
from service import openapi
from service.app import create_app
from tests.conftest import TEST_JOB_MODULES, make_settings

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
    assert len(served) == 27
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
    with pytest.raises(LookupError, match=r"GET /v1/undocumented/\{thing_id\} is served by undocumented"):
        openapi.build(REGISTRY, app.router.routes())
