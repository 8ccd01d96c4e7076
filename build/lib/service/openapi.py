"""GET /openapi.json (OpenAPI 3.1, built from the pydantic models the handlers use) and GET /docs."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from jobwire.registry import Registry
from service import schemas
from service.http import json_response
from service.jobs import SubmitJob
from service.state import REGISTRY
from service.webhooks import CreateEndpoint, UpdateEndpoint

routes = web.RouteTableDef()

REF = "#/components/schemas/{model}"


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def _job(description: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Job")}}},
    }
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return answer


JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
COMMON = {
    "401": _problem("no or bad API key"),
    "503": _problem("PostgreSQL or Redis unreachable (Retry-After)"),
}
ENDPOINT_ID = {
    "name": "endpoint_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
DELIVERY_ID = {
    "name": "delivery_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
SSE = {"text/event-stream": {"schema": {"type": "string", "description": "id:/event:/data: frames of Event"}}}


def _answer(model: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }


def _body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}


def webhook_paths() -> dict[str, Any]:
    not_found = {"404": _problem("unknown, or another tenant's")}
    invalid = {"400": _problem("not JSON"), "415": _problem("not application/json")}
    bad_page = {"422": _problem("bad limit or cursor")}
    return {
        "/v1/webhooks": {
            "post": {
                "summary": "Register an endpoint (the secret is in this answer only)",
                "requestBody": _body("CreateEndpoint"),
                "responses": {
                    "201": _answer("EndpointWithSecret", "registered"),
                    "422": _problem("invalid, or the URL resolves to a non-public address"),
                    **invalid,
                    **COMMON,
                },
            },
            "get": {
                "summary": "List endpoints, newest first",
                "parameters": PAGE,
                "responses": {"200": _answer("EndpointList", "a page"), **bad_page, **COMMON},
            },
        },
        "/v1/webhooks/signing-secret": {
            "get": {
                "summary": "The tenant's secret for jobs' own webhook_url (created on first read)",
                "responses": {"200": _answer("SigningSecret", "the secret"), **COMMON},
            }
        },
        "/v1/webhooks/signing-secret/rotate": {
            "post": {
                "summary": "Rotate the tenant's signing secret (the old one signs too for 24 h)",
                "responses": {"200": _answer("SigningSecret", "the new secret"), **COMMON},
            }
        },
        "/v1/webhooks/{endpoint_id}": {
            "get": {
                "summary": "Read an endpoint",
                "parameters": [ENDPOINT_ID],
                "responses": {"200": _answer("Endpoint", "the endpoint"), **not_found, **COMMON},
            },
            "patch": {
                "summary": "Change url, events, description; `disabled: false` re-enables",
                "parameters": [ENDPOINT_ID],
                "requestBody": _body("UpdateEndpoint"),
                "responses": {
                    "200": _answer("Endpoint", "changed"),
                    "422": _problem("invalid"),
                    **invalid,
                    **not_found,
                    **COMMON,
                },
            },
            "delete": {
                "summary": "Delete an endpoint and its deliveries",
                "parameters": [ENDPOINT_ID],
                "responses": {"204": {"description": "deleted"}, **not_found, **COMMON},
            },
        },
        "/v1/webhooks/{endpoint_id}/rotate-secret": {
            "post": {
                "summary": "Rotate an endpoint's secret (the old one signs too for 24 h)",
                "parameters": [ENDPOINT_ID],
                "responses": {
                    "200": _answer("EndpointWithSecret", "the new secret"),
                    **not_found,
                    **COMMON,
                },
            }
        },
        "/v1/webhooks/{endpoint_id}/deliveries": {
            "get": {
                "summary": "An endpoint's deliveries with every attempt, newest first",
                "parameters": [ENDPOINT_ID, *PAGE],
                "responses": {"200": _answer("DeliveryList", "a page"), **not_found, **bad_page, **COMMON},
            }
        },
        "/v1/jobs/{job_id}/deliveries": {
            "get": {
                "summary": "A job's deliveries with every attempt, newest first",
                "parameters": [JOB_ID, *PAGE],
                "responses": {"200": _answer("DeliveryList", "a page"), **not_found, **bad_page, **COMMON},
            }
        },
        "/v1/deliveries/{delivery_id}": {
            "get": {
                "summary": "Read a delivery with every attempt",
                "parameters": [DELIVERY_ID],
                "responses": {"200": _answer("Delivery", "the delivery"), **not_found, **COMMON},
            }
        },
        "/v1/deliveries/{delivery_id}/redeliver": {
            "post": {
                "summary": "Send again now, same webhook-id, with a fresh retry schedule",
                "parameters": [DELIVERY_ID],
                "responses": {
                    "202": _answer("Delivery", "pending again"),
                    "409": _problem("its endpoint is disabled"),
                    **not_found,
                    **COMMON,
                },
            }
        },
    }


def build(registry: Registry) -> dict[str, Any]:
    types = list(registry)
    components = _schemas(
        SubmitJob,
        schemas.Job,
        schemas.JobList,
        schemas.Event,
        schemas.Problem,
        CreateEndpoint,
        UpdateEndpoint,
        schemas.Endpoint,
        schemas.EndpointWithSecret,
        schemas.EndpointList,
        schemas.SigningSecret,
        schemas.Delivery,
        schemas.DeliveryList,
    )
    for jt in types:
        components.update(_schemas(jt.params_model))
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
        "paths": {
            "/v1/jobs": {
                "post": {
                    "summary": "Submit a job",
                    "description": "`params` is validated with the job type's model (see x-job-types). "
                    "Optional headers: `Idempotency-Key`, `Prefer: wait=N`.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "schema": {"type": "string", "maxLength": 255},
                        },
                        {
                            "name": "Prefer",
                            "in": "header",
                            "schema": {"type": "string", "example": "wait=10"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": REF.format(model="SubmitJob")}}},
                    },
                    "responses": {
                        "202": _job("accepted and durable", {"Location": "/v1/jobs/{id}"}),
                        "200": _job("finished within Prefer: wait", {"Preference-Applied": "wait=N"}),
                        "400": _problem("not JSON"),
                        "409": _problem("the same Idempotency-Key is still being answered"),
                        "413": _problem("body too large"),
                        "415": _problem("not application/json"),
                        "422": _problem("invalid content, or an Idempotency-Key reused with another body"),
                        **COMMON,
                    },
                },
                "get": {
                    "summary": "List jobs, newest first",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "comma-separated",
                        },
                        {"name": "type", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                        },
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "tenant",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "admin keys",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "a page",
                            "content": {
                                "application/json": {"schema": {"$ref": REF.format(model="JobList")}}
                            },
                        },
                        "422": _problem("bad query parameter"),
                        **COMMON,
                    },
                },
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "summary": "Read a job (ETag; ?wait=N with If-None-Match long-polls)",
                    "parameters": [
                        JOB_ID,
                        {
                            "name": "wait",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 60},
                        },
                        {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _job("the job", {"ETag": "version", "Retry-After": "while not terminal"}),
                        "304": {"description": "unchanged"},
                        "404": _problem("unknown, or another tenant's"),
                        "422": _problem("bad wait"),
                        **COMMON,
                    },
                }
            },
            "/v1/jobs/{job_id}/cancel": {
                "post": {
                    "summary": "Cancel a pending (200) or running (202) job",
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": _job("cancelled"),
                        "202": _job("a running job is being interrupted"),
                        "404": _problem("unknown"),
                        "409": _problem("already finished"),
                        **COMMON,
                    },
                }
            },
            "/v1/jobs/{job_id}/retry": {
                "post": {
                    "summary": "Run a failed or cancelled job again",
                    "parameters": [JOB_ID],
                    "responses": {
                        "202": _job("pending again"),
                        "404": _problem("unknown"),
                        "409": _problem("not failed or cancelled"),
                        **COMMON,
                    },
                }
            },
            "/v1/jobs/{job_id}/events": {
                "get": {
                    "summary": "The job's events as Server-Sent Events (replay, then live)",
                    "parameters": [
                        JOB_ID,
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                        {"name": "last_event_id", "in": "query", "schema": {"type": "string"}},
                        {"name": "token", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "the stream; data is an Event", "content": SSE},
                        "204": {"description": "the client already has the terminal event"},
                        "404": _problem("unknown"),
                        "422": _problem("bad Last-Event-ID"),
                        **COMMON,
                    },
                }
            },
            "/v1/events": {
                "get": {
                    "summary": "Events of up to 100 jobs on one SSE stream",
                    "parameters": [
                        {"name": "jobs", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                        {"name": "token", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "the stream; data is an Event", "content": SSE},
                        "204": {"description": "every job already finished for this client"},
                        "404": _problem("a job is unknown"),
                        "422": _problem("bad job list or cursor"),
                        **COMMON,
                    },
                }
            },
            "/v1/ws": {
                "get": {
                    "summary": "WebSocket: subscribe to jobs (with since) or to the tenant's feed",
                    "responses": {
                        "101": {"description": "switching protocols"},
                        "400": _problem("not a WebSocket upgrade"),
                        **COMMON,
                    },
                }
            },
            **webhook_paths(),
        },
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build(request.app[REGISTRY]))


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jobwire API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
 h1{font-size:1.6rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
 .op{margin:1rem 0;padding:.6rem .8rem;border:1px solid #e3e6ea;border-radius:6px}
 .m{display:inline-block;min-width:4.2rem;font-weight:600;color:#fff;border-radius:4px;text-align:center;margin-right:.5rem}
 .get{background:#2f6fdb}.post{background:#2f9e44} code{background:#f3f4f6;padding:0 .25rem;border-radius:3px}
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
