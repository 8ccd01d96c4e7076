"""GET /openapi.json (OpenAPI 3.1) and GET /docs.

The document's paths and methods are the application's own routes, read when it is asked for, so a
route the app serves cannot be missing from it. What each operation says (summary, parameters,
body, answers) is in OPERATIONS, keyed by the name of the handler, which is also the operationId.
The schemas are the models of service.schemas and the params models of the job types.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from jobwire import resources
from jobwire.registry import Registry
from service import schemas
from service.http import json_response
from service.state import REGISTRY

routes = web.RouteTableDef()

REF = "#/components/schemas/{model}"
# the routes the document describes; /healthz, /metrics, the dashboard and the document itself are
# not part of the api
DOCUMENTED_PREFIX = "/v1/"


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _content(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    return {media_type: {"schema": {"$ref": REF.format(model=model.__name__)}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(schemas.Problem, "application/problem+json")}


def _answer(
    model: type[BaseModel], description: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": _content(model)}
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return answer


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": _content(model)}


def _string(name: str, where: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": {"type": "string"}, **extra}


def _uuid(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


JOB_ID = _uuid("job_id")
ENDPOINT_ID = _uuid("endpoint_id")
DELIVERY_ID = _uuid("delivery_id")
SCHEDULE_ID = _uuid("schedule_id")
LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}
PAGE = [LIMIT, _string("cursor", "query")]
SSE = {"text/event-stream": {"schema": {"type": "string", "description": "id:/event:/data: frames of Event"}}}
STREAM = {"200": {"description": "the stream; data is an Event", "content": SSE}}

COMMON = {
    "401": _problem("no or bad API key"),
    "503": _problem("PostgreSQL or Redis unreachable (Retry-After)"),
}
NOT_FOUND = {"404": _problem("unknown, or another tenant's")}
NOT_JSON = {"400": _problem("not JSON"), "415": _problem("not application/json")}
BAD_PAGE = {"422": _problem("bad limit or cursor")}

# Per handler (by name): the operation object without its operationId; every answer also lists COMMON.
OPERATIONS: dict[str, dict[str, Any]] = {
    # ---- jobs (service.jobs)
    "submit": {
        "summary": "Submit a job",
        "description": "`params` is validated with the job type's model (see x-job-types). "
        "Optional headers: `Idempotency-Key`, `Prefer: wait=N`.",
        "parameters": [
            {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}},
            {"name": "Prefer", "in": "header", "schema": {"type": "string", "example": "wait=10"}},
        ],
        "requestBody": _body(schemas.SubmitJob),
        "responses": {
            "202": _answer(schemas.Job, "accepted and durable", {"Location": "/v1/jobs/{id}"}),
            "200": _answer(schemas.Job, "finished within Prefer: wait", {"Preference-Applied": "wait=N"}),
            "400": _problem("not JSON"),
            "409": _problem("the same Idempotency-Key is still being answered"),
            "413": _problem("body too large"),
            "415": _problem("not application/json"),
            "422": _problem("invalid content, or an Idempotency-Key reused with another body"),
        },
    },
    "list_jobs": {
        "summary": "List jobs, newest first",
        "parameters": [
            _string("status", "query", description="comma-separated"),
            _string("type", "query"),
            _string("schedule_id", "query", description="jobs submitted by this schedule"),
            *PAGE,
            _string("tenant", "query", description="admin keys"),
        ],
        "responses": {"200": _answer(schemas.JobList, "a page"), "422": _problem("bad query parameter")},
    },
    "get_job": {
        "summary": "Read a job (ETag; ?wait=N with If-None-Match long-polls)",
        "parameters": [
            JOB_ID,
            {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 60}},
            _string("If-None-Match", "header"),
        ],
        "responses": {
            "200": _answer(schemas.Job, "the job", {"ETag": "version", "Retry-After": "while not terminal"}),
            "304": {"description": "unchanged"},
            **NOT_FOUND,
            "422": _problem("bad wait"),
        },
    },
    "move_job": {
        "summary": "Move a scheduled job to another time (`run_at` or `delay_s`)",
        "parameters": [JOB_ID],
        "requestBody": _body(schemas.MoveJob),
        "responses": {
            "200": _answer(schemas.Job, "moved"),
            "409": _problem("the job is not scheduled"),
            "422": _problem("invalid time"),
            **NOT_JSON,
            **NOT_FOUND,
        },
    },
    "cancel": {
        "summary": "Cancel a scheduled or pending (200) or running (202) job",
        "parameters": [JOB_ID],
        "responses": {
            "200": _answer(schemas.Job, "cancelled"),
            "202": _answer(schemas.Job, "a running job is being interrupted"),
            "404": _problem("unknown"),
            "409": _problem("already finished"),
        },
    },
    "retry": {
        "summary": "Run a failed or cancelled job again",
        "parameters": [JOB_ID],
        "responses": {
            "202": _answer(schemas.Job, "pending again"),
            "404": _problem("unknown"),
            "409": _problem("not failed or cancelled"),
        },
    },
    # ---- schedules (service.schedules)
    "create_schedule": {
        "summary": "Create a schedule (`cron` in `timezone`, or `interval_s`)",
        "description": "The job's params are validated with its type's model. The first run is the "
        "first slot after now.",
        "requestBody": _body(schemas.CreateSchedule),
        "responses": {
            "201": _answer(schemas.Schedule, "created", {"Location": "/v1/schedules/{id}"}),
            "409": _problem("the tenant has a schedule of that name"),
            "422": _problem("invalid cron, time zone, job type or params"),
            **NOT_JSON,
        },
    },
    "list_schedules": {
        "summary": "List schedules, newest first",
        "parameters": PAGE,
        "responses": {"200": _answer(schemas.ScheduleList, "a page"), **BAD_PAGE},
    },
    "get_schedule": {
        "summary": "Read a schedule",
        "parameters": [SCHEDULE_ID],
        "responses": {"200": _answer(schemas.Schedule, "the schedule"), **NOT_FOUND},
    },
    "update_schedule": {
        "summary": "Change a schedule; `paused: true` pauses, `false` resumes",
        "parameters": [SCHEDULE_ID],
        "requestBody": _body(schemas.UpdateSchedule),
        "responses": {
            "200": _answer(schemas.Schedule, "changed"),
            "409": _problem("the new name is taken"),
            "422": _problem("invalid"),
            **NOT_JSON,
            **NOT_FOUND,
        },
    },
    "delete_schedule": {
        "summary": "Delete a schedule (its jobs stay)",
        "parameters": [SCHEDULE_ID],
        "responses": {"204": {"description": "deleted"}, **NOT_FOUND},
    },
    "trigger_schedule": {
        "summary": "Submit the schedule's job now, outside its timetable",
        "parameters": [SCHEDULE_ID],
        "responses": {
            "202": _answer(schemas.Job, "submitted", {"Location": "/v1/jobs/{id}"}),
            **NOT_FOUND,
        },
    },
    # ---- streams (service.sse, service.ws)
    "job_events": {
        "summary": "The job's events as Server-Sent Events (replay, then live)",
        "parameters": [
            JOB_ID,
            _string("Last-Event-ID", "header"),
            _string("last_event_id", "query"),
            _string("token", "query"),
        ],
        "responses": {
            **STREAM,
            "204": {"description": "the client already has the terminal event"},
            "404": _problem("unknown"),
            "422": _problem("bad Last-Event-ID"),
        },
    },
    "many_events": {
        "summary": "Events of up to 100 jobs on one SSE stream",
        "parameters": [
            _string("jobs", "query", required=True),
            _string("Last-Event-ID", "header"),
            _string("token", "query"),
        ],
        "responses": {
            **STREAM,
            "204": {"description": "every job already finished for this client"},
            "404": _problem("a job is unknown"),
            "422": _problem("bad job list or cursor"),
        },
    },
    "websocket": {
        "summary": "WebSocket: subscribe to jobs (with since) or to the tenant's feed",
        "responses": {
            "101": {"description": "switching protocols"},
            "400": _problem("not a WebSocket upgrade"),
        },
    },
    # ---- webhooks (service.webhooks)
    "create_endpoint": {
        "summary": "Register an endpoint (the secret is in this answer only)",
        "requestBody": _body(schemas.CreateEndpoint),
        "responses": {
            "201": _answer(schemas.EndpointWithSecret, "registered"),
            "422": _problem("invalid, or the URL resolves to a non-public address"),
            **NOT_JSON,
        },
    },
    "list_endpoints": {
        "summary": "List endpoints, newest first",
        "parameters": PAGE,
        "responses": {"200": _answer(schemas.EndpointList, "a page"), **BAD_PAGE},
    },
    "get_signing_secret": {
        "summary": "The tenant's secret for jobs' own webhook_url (created on first read)",
        "responses": {"200": _answer(schemas.SigningSecret, "the secret")},
    },
    "rotate_signing_secret": {
        "summary": "Rotate the tenant's signing secret (the old one signs too for 24 h)",
        "responses": {"200": _answer(schemas.SigningSecret, "the new secret")},
    },
    "get_endpoint": {
        "summary": "Read an endpoint",
        "parameters": [ENDPOINT_ID],
        "responses": {"200": _answer(schemas.Endpoint, "the endpoint"), **NOT_FOUND},
    },
    "update_endpoint": {
        "summary": "Change url, events, description; `disabled: false` re-enables",
        "parameters": [ENDPOINT_ID],
        "requestBody": _body(schemas.UpdateEndpoint),
        "responses": {
            "200": _answer(schemas.Endpoint, "changed"),
            "422": _problem("invalid"),
            **NOT_JSON,
            **NOT_FOUND,
        },
    },
    "delete_endpoint": {
        "summary": "Delete an endpoint and its deliveries",
        "parameters": [ENDPOINT_ID],
        "responses": {"204": {"description": "deleted"}, **NOT_FOUND},
    },
    "rotate_endpoint_secret": {
        "summary": "Rotate an endpoint's secret (the old one signs too for 24 h)",
        "parameters": [ENDPOINT_ID],
        "responses": {"200": _answer(schemas.EndpointWithSecret, "the new secret"), **NOT_FOUND},
    },
    "endpoint_deliveries": {
        "summary": "An endpoint's deliveries with every attempt, newest first",
        "parameters": [ENDPOINT_ID, *PAGE],
        "responses": {"200": _answer(schemas.DeliveryList, "a page"), **NOT_FOUND, **BAD_PAGE},
    },
    "job_deliveries": {
        "summary": "A job's deliveries with every attempt, newest first",
        "parameters": [JOB_ID, *PAGE],
        "responses": {"200": _answer(schemas.DeliveryList, "a page"), **NOT_FOUND, **BAD_PAGE},
    },
    "get_delivery": {
        "summary": "Read a delivery with every attempt",
        "parameters": [DELIVERY_ID],
        "responses": {"200": _answer(schemas.Delivery, "the delivery"), **NOT_FOUND},
    },
    "redeliver": {
        "summary": "Send again now, same webhook-id, with a fresh retry schedule",
        "parameters": [DELIVERY_ID],
        "responses": {
            "202": _answer(schemas.Delivery, "pending again"),
            "409": _problem("its endpoint is disabled"),
            **NOT_FOUND,
        },
    },
}


def _operation(name: str, method: str, path: str) -> dict[str, Any]:
    try:
        operation = OPERATIONS[name]
    except KeyError:
        raise LookupError(
            f"{method} {path} is served by {name}(), which OPERATIONS does not describe"
        ) from None
    return {"operationId": name, **operation, "responses": {**operation["responses"], **COMMON}}


def paths(app_routes: Iterable[web.AbstractRoute]) -> dict[str, dict[str, Any]]:
    """The /v1 routes the app serves, each described by OPERATIONS."""
    out: dict[str, dict[str, Any]] = {}
    for route in app_routes:
        # aiohttp answers HEAD on every GET route by itself
        if route.resource is None or route.method == "HEAD":
            continue
        path = route.resource.canonical
        if path.startswith(DOCUMENTED_PREFIX):
            name = route.handler.__name__
            out.setdefault(path, {})[route.method.lower()] = _operation(name, route.method, path)
    return out


# every model of service.schemas (requests, and the answers of jobwire.resources it names), whether
# an operation names it or not (Event is what the streams' frames carry)
MODELS = [
    model
    for model in vars(schemas).values()
    if inspect.isclass(model)
    and issubclass(model, BaseModel)
    and model.__module__ in (schemas.__name__, resources.__name__)
    and model is not resources.Resource
]


def build(registry: Registry, app_routes: Iterable[web.AbstractRoute]) -> dict[str, Any]:
    types = list(registry)
    components = _schemas(*MODELS, *(jt.params_model for jt in types))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobwire",
            "version": "1",
            "description": "Submit jobs, follow them live, cancel and retry them. Every /v1 route needs "
            "`Authorization: Bearer <api key>`; the stream routes also take `?token=`.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "x-job-types": {
            jt.name: {
                "params": {"$ref": REF.format(model=jt.params_model.__name__)},
                "description": jt.description,
                "timeout_s": jt.timeout_s,
                "max_attempts": jt.max_attempts,
            }
            for jt in types
        },
        "paths": paths(app_routes),
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build(request.app[REGISTRY], request.app.router.routes()))


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jobwire API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
 h1{font-size:1.6rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
 .op{margin:1rem 0;padding:.6rem .8rem;border:1px solid #e3e6ea;border-radius:6px}
 .m{display:inline-block;min-width:4.2rem;font-weight:600;color:#fff;border-radius:4px;text-align:center;margin-right:.5rem}
 .get{background:#2f6fdb}.post{background:#2f9e44}.patch{background:#b7791f}.delete{background:#c92a2a}
 code{background:#f3f4f6;padding:0 .25rem;border-radius:3px}
 pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:13px} .codes code{margin-right:.3rem}
</style></head><body>
<h1>jobwire API</h1><p id="intro"></p><div id="ops"></div><h2>Job types</h2><div id="types"></div>
<script>
fetch("/openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("intro").textContent = doc.info.description;
  const ops = document.getElementById("ops");
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const div = document.createElement("div"); div.className = "op";
      const codes = Object.entries(op.responses)
        .map(([c, r]) => `<code title="${r.description}">${c}</code>`).join("");
      div.innerHTML = `<span class="m ${method}">${method.toUpperCase()}</span><code>${path}</code>
        <div>${op.summary}</div><div class="codes">${codes}</div>`;
      ops.appendChild(div);
    }
  }
  const types = document.getElementById("types");
  for (const [name, t] of Object.entries(doc["x-job-types"])) {
    const schema = doc.components.schemas[t.params["$ref"].split("/").pop()];
    const div = document.createElement("div"); div.className = "op";
    const props = JSON.stringify(schema.properties || {}, null, 2);
    div.innerHTML = `<code>${name}</code> ${t.description}<pre>${props}</pre>`;
    types.appendChild(div);
  }
});
</script></body></html>"""


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html")
