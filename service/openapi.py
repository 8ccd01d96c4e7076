"""GET /openapi.json (OpenAPI 3.1) and GET /docs.

The document's paths and methods are the application's own routes, read when it is asked for, so a
route the app serves cannot be missing from it. What each operation says (summary, parameters,
body, answers) is in OPERATIONS, keyed by the name of the handler, which is also the operationId;
its tag is the route module's (TAGS). The schemas are the models of service.schemas and the params
models of the job types: the submission body is one schema per job type, selected by `type`, so
that a generated client types each job's params. The 3.1 `webhooks` section describes what the
dispatcher POSTs to receivers.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from jobwire import resources
from jobwire.events import WEBHOOK_EVENT_NAMES
from jobwire.registry import JobType, Registry
from service import schemas
from service.http import json_response
from service.state import REGISTRY, SETTINGS

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
BATCH_ID = _uuid("batch_id")
LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}
PAGE = [LIMIT, _string("cursor", "query")]
# the schema of one frame of the stream (as SSE parsers hand them out): its data is an Event
SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "description": "one frame: `id` is the event's seq, `event` its type, `data` the Event as JSON",
            "properties": {
                "id": {"type": "string"},
                "event": {"type": "string"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": REF.format(model="Event")},
                },
                "retry": {"type": "integer", "description": "the reconnection delay, ms"},
            },
        }
    }
}
STREAM = {"200": {"description": "the stream; data is an Event", "content": SSE}}

TOKEN = _string(
    "token",
    "query",
    description="instead of the Authorization header (EventSource and browsers' WebSocket send none): "
    "the stream token of a job's events_url (that job only), or an API key",
)

# what any /v1 route may answer, whatever it does; an operation's own description of a code wins
COMMON = {
    "401": _problem("no API key, or a bad one (or a bad stream token)"),
    "422": _problem("invalid input: `errors[].loc` names the field (e.g. a NUL character in the query)"),
    "429": _problem(
        "over the key's rate limit, its open streams, or the address's failed authentications (Retry-After)"
    ),
    "503": _problem("PostgreSQL or Redis unreachable (Retry-After)"),
}
NOT_FOUND = {"404": _problem("unknown, or another tenant's")}
NOT_JSON = {
    "400": _problem("not JSON"),
    "413": _problem("body too large (JOBWIRE_MAX_BODY_BYTES)"),
    "415": _problem("not application/json"),
}
BAD_PAGE = {"422": _problem("bad limit or cursor")}

# the tag of each route module's operations
TAGS = {
    "service.jobs": "jobs",
    "service.bulk": "jobs",
    "service.sse": "streams",
    "service.ws": "streams",
    "service.webhooks": "webhooks",
    "service.schedules": "schedules",
    "service.batches": "batches",
}
TAG_DESCRIPTIONS = {
    "jobs": "Submit, read, list, move, cancel and retry jobs",
    "streams": "Follow jobs live: Server-Sent Events and a WebSocket",
    "webhooks": "Webhook endpoints, signing secrets and deliveries (what is POSTed: see `webhooks`)",
    "schedules": "Recurring timetables (cron in a time zone, or an interval) that submit jobs",
    "batches": "Many jobs as one: all-or-nothing submission, live counts and progress, one webhook",
}

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
            "409": _problem("the same Idempotency-Key is still being answered"),
            "422": _problem(
                "invalid content (an unknown type, bad params), or an Idempotency-Key reused with another "
                "body"
            ),
            **NOT_JSON,
        },
    },
    "list_jobs": {
        "summary": "List jobs, newest first",
        "parameters": [
            _string("status", "query", description="comma-separated"),
            _string("type", "query"),
            _string("schedule_id", "query", description="jobs submitted by this schedule"),
            {
                "name": "label",
                "in": "query",
                "description": "`key:value`, repeatable: jobs carrying every label given",
                "schema": {"type": "array", "items": {"type": "string", "example": "customer:acme"}},
                "style": "form",
                "explode": True,
            },
            _string("batch_id", "query", description="the jobs of this batch"),
            *PAGE,
            _string("tenant", "query", description="admin keys"),
        ],
        "responses": {"200": _answer(schemas.JobList, "a page"), "422": _problem("bad query parameter")},
    },
    "bulk_action": {
        "summary": "Cancel or retry every job a filter matches (or count them: dry_run)",
        "description": "The jobs matching when the action starts are acted on in bounded chunks, each "
        "as its single-job route would (events, webhooks, a running job's cancel requested). An empty "
        'filter needs `"all": true`. An admin key names the tenant it acts on in `filter.tenant`.',
        "requestBody": _body(schemas.BulkAction),
        "responses": {
            "200": _answer(schemas.BulkResult, "how many matched, and how many the action changed"),
            "422": _problem("invalid body, an empty filter without all, or a tenant the key may not act on"),
            **NOT_JSON,
        },
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
            "409": _problem("already finished"),
            **NOT_FOUND,
        },
    },
    "retry": {
        "summary": "Run a failed or cancelled job again",
        "parameters": [JOB_ID],
        "responses": {
            "202": _answer(schemas.Job, "pending again"),
            "409": _problem("not failed or cancelled"),
            **NOT_FOUND,
        },
    },
    # ---- batches (service.batches)
    "submit_batch": {
        "summary": "Submit up to 1,000 jobs as one batch, all or nothing",
        "description": "Every job is validated (params by its type's model) before any is stored; a "
        "fault is a 422 whose `loc` names the job's index. `depends_on` holds indexes of earlier "
        "jobs of the batch or ids of the tenant's jobs. Optional header: `Idempotency-Key`.",
        "parameters": [
            {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}}
        ],
        "requestBody": _body(schemas.SubmitBatch),
        "responses": {
            "202": _answer(schemas.Batch, "accepted: every job durable", {"Location": "/v1/batches/{id}"}),
            "422": _problem("a job is invalid (loc names its index), or an Idempotency-Key reused"),
            **NOT_JSON,
        },
    },
    "list_batches": {
        "summary": "List batches, newest first",
        "parameters": PAGE,
        "responses": {"200": _answer(schemas.BatchList, "a page"), **BAD_PAGE},
    },
    "get_batch": {
        "summary": "Read a batch: status, counts by job status, progress",
        "parameters": [BATCH_ID],
        "responses": {"200": _answer(schemas.Batch, "the batch"), **NOT_FOUND},
    },
    "cancel_batch": {
        "summary": "Cancel a batch: every unfinished job in it is cancelled (running ones interrupted)",
        "parameters": [BATCH_ID],
        "responses": {
            "200": _answer(schemas.Batch, "cancelled"),
            "409": _problem("the batch is not running"),
            **NOT_FOUND,
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
            TOKEN,
        ],
        "responses": {
            **STREAM,
            "204": {"description": "the client already has the terminal event"},
            "404": _problem("unknown, another tenant's, or not the stream token's job"),
            "422": _problem("bad Last-Event-ID"),
        },
    },
    "batch_events": {
        "summary": "A batch's counts and progress as Server-Sent Events, then its terminal event",
        "description": "`progress` events (coalesced: each carries the whole state), then one "
        "`completed` or `cancelled` with the final counts, after which the stream ends. An event's id "
        "versions the batch; a reconnect with the terminal event's id gets 204.",
        "parameters": [
            BATCH_ID,
            _string("Last-Event-ID", "header"),
            _string("last_event_id", "query"),
            TOKEN,
        ],
        "responses": {
            "200": {
                "description": "the stream; data is a BatchEvent",
                "content": {
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "event": {"type": "string"},
                                "data": {
                                    "type": "string",
                                    "contentMediaType": "application/json",
                                    "contentSchema": {"$ref": REF.format(model="BatchEvent")},
                                },
                            },
                        }
                    }
                },
            },
            "204": {"description": "the client already has the terminal event"},
            "404": _problem("unknown, another tenant's, or not the stream token's batch"),
            "422": _problem("bad Last-Event-ID"),
        },
    },
    "many_events": {
        "summary": "Events of up to 100 jobs on one SSE stream",
        "parameters": [
            _string("jobs", "query", required=True),
            _string("Last-Event-ID", "header"),
            TOKEN,
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
        "parameters": [TOKEN],
        "responses": {
            "101": {"description": "switching protocols"},
            "400": _problem("not a WebSocket upgrade"),
            "403": _problem("the page's Origin is not in JOBWIRE_CORS_ORIGINS"),
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


def _operation(name: str, module: str, method: str, path: str) -> dict[str, Any]:
    try:
        operation = OPERATIONS[name]
        tag = TAGS[module]
    except KeyError:
        raise LookupError(
            f"{method} {path} is served by {module}.{name}(), which OPERATIONS or TAGS does not describe"
        ) from None
    responses = {**COMMON, **operation["responses"]}
    return {
        "operationId": name,
        "tags": [tag],
        **operation,
        "responses": {code: responses[code] for code in sorted(responses)},
    }


def paths(app_routes: Iterable[web.AbstractRoute]) -> dict[str, dict[str, Any]]:
    """The /v1 routes the app serves, each described by OPERATIONS."""
    out: dict[str, dict[str, Any]] = {}
    for route in app_routes:
        # aiohttp answers HEAD on every GET route by itself
        if route.resource is None or route.method == "HEAD":
            continue
        path = route.resource.canonical
        if path.startswith(DOCUMENTED_PREFIX):
            handler = route.handler
            out.setdefault(path, {})[route.method.lower()] = _operation(
                handler.__name__, handler.__module__, route.method, path
            )
    return out


def _submission_name(job_type: str, taken: set[str]) -> str:
    """SubmitJob's variant for a job type, named for code generators: demo.sleep -> SubmitDemoSleep."""
    name = "Submit" + "".join(part.capitalize() for part in re.split(r"[._]", job_type))
    while name in taken:  # a.b_c and a.b.c: distinct types, the same camel case
        name += "_"
    taken.add(name)
    return name


def submissions(types: list[JobType], components: dict[str, Any]) -> dict[str, Any]:
    """One submission schema per job type (SubmitJob's fields, `type` fixed to the type's name and
    `params` its model), and SubmitJob as their oneOf with `type` as the discriminator. Adds the
    variants to `components` and returns SubmitJob's schema."""
    base = components["SubmitJob"]
    mapping: dict[str, str] = {}
    for jt in types:
        name = _submission_name(jt.name, set(components))
        properties = dict(base["properties"])
        properties["type"] = {"type": "string", "const": jt.name, "description": "the job type"}
        properties["params"] = {"$ref": REF.format(model=jt.params_model.__name__)}
        components[name] = {
            **base,
            "title": name,
            "description": jt.description or f"Submit a {jt.name} job",
            "properties": properties,
        }
        mapping[jt.name] = REF.format(model=name)
    return {
        "title": "SubmitJob",
        "description": base.get("description", ""),
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }


WEBHOOK_HEADERS = [
    ("webhook-id", "the delivery's id: the same on every attempt and redelivery (deduplicate on it)"),
    ("webhook-timestamp", "seconds since the epoch when this attempt was signed"),
    (
        "webhook-signature",
        "`v1,<base64 HMAC-SHA256 of {webhook-id}.{webhook-timestamp}.{body}>`, space-separated during a "
        "secret rotation (jobwire.verify_webhook checks it)",
    ),
]


# what a receiver's answer does to the delivery (jobwire.webhooks.retry.decide)
WEBHOOK_ANSWERS = {
    "200": {"description": "received: any 2xx ends the delivery"},
    "410": {"description": "gone: the delivery fails at once and is not retried"},
    "429": {"description": "retried later; the Retry-After of a 429 or 503 is honoured, within bounds"},
    "500": {"description": "any other answer, a timeout, a refused connection: retried with backoff"},
}


def webhooks(components: dict[str, Any]) -> dict[str, Any]:
    """The 3.1 `webhooks` section: one POST per event type, to an endpoint or a job's webhook_url."""
    out: dict[str, Any] = {}
    for event in WEBHOOK_EVENT_NAMES:
        payload = schemas.BatchWebhookPayload if event.startswith("batch.") else schemas.WebhookPayload
        name = "Webhook" + "".join(part.capitalize() for part in event.split("."))
        components[name] = {
            "title": name,
            "allOf": [
                {"$ref": REF.format(model=payload.__name__)},
                {"type": "object", "properties": {"type": {"type": "string", "const": event}}},
            ],
        }
        out[event] = {
            "post": {
                "operationId": "on_" + event.replace(".", "_"),
                "tags": ["webhooks"],
                "summary": f"jobwire POSTs {event} to the endpoints that subscribe to it",
                "security": [],  # signed instead: see webhook-signature
                "parameters": [
                    {
                        "name": header,
                        "in": "header",
                        "required": True,
                        "description": text,
                        "schema": {"type": "string"},
                    }
                    for header, text in WEBHOOK_HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}},
                },
                "responses": WEBHOOK_ANSWERS,
            }
        }
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
    and model is not schemas.JobTimes  # the time fields SubmitJob inherits, never a body of its own
]


def build(
    registry: Registry, app_routes: Iterable[web.AbstractRoute], server_url: str = "/"
) -> dict[str, Any]:
    """The document; server_url is where clients reach the api (JOBWIRE_PUBLIC_URL, or the host the
    request for the document came to)."""
    types = list(registry)
    components = _schemas(*MODELS, *(jt.params_model for jt in types))
    components["SubmitJob"] = submissions(types, components)
    hooks = webhooks(components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobwire",
            "version": "1",
            "description": "Submit jobs, follow them live, cancel and retry them. Every /v1 route needs "
            "`Authorization: Bearer <api key>`; the stream routes also take `?token=`.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": server_url, "description": "this jobwire api"}],
        "tags": [{"name": name, "description": text} for name, text in TAG_DESCRIPTIONS.items()],
        "webhooks": hooks,
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
    public = request.app[SETTINGS].public_url
    server = public or f"{request.scheme}://{request.host}"
    return json_response(build(request.app[REGISTRY], request.app.router.routes(), server))


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
