"""/v1/webhooks (endpoints and the tenant signing secret) and the deliveries they receive.

Secrets of endpoints are shown only in the answers that create or rotate them. The tenant signing
secret (for jobs' own webhook_url) is readable by its tenant, as the contract says.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from jobwire import jobstore
from jobwire.apikeys import Principal
from jobwire.ids import new_id
from jobwire.job import iso
from jobwire.jobstore import Row
from jobwire.webhooks import signing
from jobwire.webhooks import store as webhookstore
from service.http import check_destination, json_response, query_cursor, query_int, read_json
from service.problems import Problem, validation_problem
from service.schemas import CreateEndpoint, UpdateEndpoint
from service.state import DB, PRINCIPAL, SETTINGS

routes = web.RouteTableDef()

# ---- views -----------------------------------------------------------------------------------


def endpoint_view(row: Row, *, secret: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": str(row["id"]),
        "url": row["url"],
        "events": list(row["events"]),
        "description": row["description"],
        "disabled": row["disabled_at"] is not None,
        "disabled_reason": row["disabled_reason"],
        "disabled_at": iso(row["disabled_at"]),
        "failing_since": iso(row["failing_since"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if secret:
        view["secret"] = row["secret"]
    return view


def delivery_view(row: Row, attempts: list[Row]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "job_id": None if row["job_id"] is None else str(row["job_id"]),
        "batch_id": None if row["batch_id"] is None else str(row["batch_id"]),
        "endpoint_id": str(row["endpoint_id"]) if row["endpoint_id"] else None,
        "url": row["url"],
        "event_type": row["event_type"],
        "webhook_id": signing.message_id(row["job_id"], row["seq"], row["batch_id"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "created_at": iso(row["created_at"]),
        "delivered_at": iso(row["delivered_at"]),
        "attempt_history": [
            {
                "at": iso(a["at"]),
                "status_code": a["status_code"],
                "error": a["error"],
                "duration_ms": round(float(a["duration_ms"]), 2),
            }
            for a in attempts
        ],
    }


def _secret_view(row: Row) -> dict[str, Any]:
    return {
        "secret": row["secret"],
        "created_at": iso(row["created_at"]),
        "rotated_at": iso(row["rotated_at"]),
        "previous_secret_expires_at": iso(row["previous_expires_at"]),
    }


# ---- helpers ---------------------------------------------------------------------------------


def _principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _uuid(request: web.Request, name: str, what: str) -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise Problem(404, f"no {what} {request.match_info[name]}", slug="not-found") from None


async def _parse(request: web.Request, model: type[BaseModel]) -> Any:
    body = await read_json(request)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_problem(exc) from None


async def _deliveries_page(request: web.Request, **where: UUID) -> web.Response:
    limit = query_int(request, "limit", default=50, lo=1, hi=200)
    pool = request.app[DB]
    rows = await webhookstore.list_deliveries(
        pool, tenant=_principal(request).scope(), limit=limit + 1, after=query_cursor(request), **where
    )
    page = rows[:limit]
    history = await webhookstore.attempts_of(pool, [r["id"] for r in page])
    return json_response(
        {
            "items": [delivery_view(r, history[r["id"]]) for r in page],
            "next_cursor": jobstore.encode_cursor(page[-1]) if len(rows) > limit else None,
        }
    )


# ---- the tenant signing secret ---------------------------------------------------------------
# /v1/webhooks/{endpoint_id} only matches hex and dashes, so these paths never reach it (a PATCH of
# signing-secret is a 405, not "no endpoint signing-secret")


@routes.get("/v1/webhooks/signing-secret")
async def get_signing_secret(request: web.Request) -> web.Response:
    row = await webhookstore.signing_secret(request.app[DB], _principal(request).tenant, signing.new_secret())
    return json_response(_secret_view(row))


@routes.post("/v1/webhooks/signing-secret/rotate")
async def rotate_signing_secret(request: web.Request) -> web.Response:
    row = await webhookstore.rotate_signing_secret(
        request.app[DB],
        _principal(request).tenant,
        signing.new_secret(),
        request.app[SETTINGS].webhook_secret_grace_s,
    )
    return json_response(_secret_view(row))


# ---- endpoints -------------------------------------------------------------------------------


@routes.post("/v1/webhooks")
async def create_endpoint(request: web.Request) -> web.Response:
    body: CreateEndpoint = await _parse(request, CreateEndpoint)
    await check_destination(request, body.url)
    row = await webhookstore.create_endpoint(
        request.app[DB],
        webhookstore.NewEndpoint(
            id=new_id(),
            tenant=_principal(request).tenant,
            url=body.url,
            events=body.events,
            description=body.description,
            secret=signing.new_secret(),
        ),
    )
    return json_response(
        endpoint_view(row, secret=True), status=201, headers={"Location": f"/v1/webhooks/{row['id']}"}
    )


@routes.get("/v1/webhooks")
async def list_endpoints(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=50, lo=1, hi=200)
    rows = await webhookstore.list_endpoints(
        request.app[DB], _principal(request).scope(), limit + 1, query_cursor(request)
    )
    page = rows[:limit]
    return json_response(
        {
            "items": [endpoint_view(r) for r in page],
            "next_cursor": jobstore.encode_cursor(page[-1]) if len(rows) > limit else None,
        }
    )


def _endpoint_not_found(endpoint_id: object) -> Problem:
    return Problem(404, f"no webhook endpoint {endpoint_id}", slug="not-found")


@routes.get("/v1/webhooks/{endpoint_id:[0-9a-fA-F-]+}")
async def get_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _uuid(request, "endpoint_id", "webhook endpoint")
    row = await webhookstore.get_endpoint(request.app[DB], endpoint_id, _principal(request).scope())
    if row is None:
        raise _endpoint_not_found(endpoint_id)
    return json_response(endpoint_view(row))


@routes.patch("/v1/webhooks/{endpoint_id:[0-9a-fA-F-]+}")
async def update_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _uuid(request, "endpoint_id", "webhook endpoint")
    body: UpdateEndpoint = await _parse(request, UpdateEndpoint)
    changes = body.model_dump(exclude_none=True)
    if body.url is not None:
        await check_destination(request, body.url)
    async with request.app[DB].acquire() as conn:
        row = await webhookstore.update_endpoint(conn, endpoint_id, _principal(request).scope(), changes)
    if row is None:
        raise _endpoint_not_found(endpoint_id)
    return json_response(endpoint_view(row))


@routes.delete("/v1/webhooks/{endpoint_id:[0-9a-fA-F-]+}")
async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _uuid(request, "endpoint_id", "webhook endpoint")
    if not await webhookstore.delete_endpoint(request.app[DB], endpoint_id, _principal(request).scope()):
        raise _endpoint_not_found(endpoint_id)
    return web.Response(status=204)


@routes.post("/v1/webhooks/{endpoint_id:[0-9a-fA-F-]+}/rotate-secret")
async def rotate_endpoint_secret(request: web.Request) -> web.Response:
    endpoint_id = _uuid(request, "endpoint_id", "webhook endpoint")
    row = await webhookstore.rotate_endpoint_secret(
        request.app[DB],
        endpoint_id,
        _principal(request).scope(),
        signing.new_secret(),
        request.app[SETTINGS].webhook_secret_grace_s,
    )
    if row is None:
        raise _endpoint_not_found(endpoint_id)
    return json_response(endpoint_view(row, secret=True))


@routes.get("/v1/webhooks/{endpoint_id:[0-9a-fA-F-]+}/deliveries")
async def endpoint_deliveries(request: web.Request) -> web.Response:
    endpoint_id = _uuid(request, "endpoint_id", "webhook endpoint")
    if await webhookstore.get_endpoint(request.app[DB], endpoint_id, _principal(request).scope()) is None:
        raise _endpoint_not_found(endpoint_id)
    return await _deliveries_page(request, endpoint_id=endpoint_id)


# ---- deliveries ------------------------------------------------------------------------------


@routes.get("/v1/jobs/{job_id}/deliveries")
async def job_deliveries(request: web.Request) -> web.Response:
    job_id = _uuid(request, "job_id", "job")
    if await jobstore.get_job(request.app[DB], job_id, _principal(request).scope()) is None:
        raise Problem(404, f"no job {job_id}", slug="not-found")
    return await _deliveries_page(request, job_id=job_id)


def _delivery_not_found(delivery_id: object) -> Problem:
    return Problem(404, f"no delivery {delivery_id}", slug="not-found")


@routes.get("/v1/deliveries/{delivery_id}")
async def get_delivery(request: web.Request) -> web.Response:
    delivery_id = _uuid(request, "delivery_id", "delivery")
    pool = request.app[DB]
    row = await webhookstore.get_delivery(pool, delivery_id, _principal(request).scope())
    if row is None:
        raise _delivery_not_found(delivery_id)
    history = await webhookstore.attempts_of(pool, [delivery_id])
    return json_response(delivery_view(row, history[delivery_id]))


@routes.post("/v1/deliveries/{delivery_id}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    delivery_id = _uuid(request, "delivery_id", "delivery")
    pool = request.app[DB]
    scope = _principal(request).scope()
    current = await webhookstore.get_delivery(pool, delivery_id, scope)
    if current is None:
        raise _delivery_not_found(delivery_id)
    if current["endpoint_id"] is not None:
        endpoint = await webhookstore.get_endpoint(pool, current["endpoint_id"], scope)
        if endpoint is not None and endpoint["disabled_at"] is not None:
            raise Problem(
                409,
                f"the endpoint is disabled ({endpoint['disabled_reason']}); re-enable it with "
                f'PATCH /v1/webhooks/{endpoint["id"]} {{"disabled": false}} first',
                slug="endpoint-disabled",
            )
    row = await webhookstore.redeliver(pool, delivery_id, scope)
    if row is None:
        raise _delivery_not_found(delivery_id)
    history = await webhookstore.attempts_of(pool, [delivery_id])
    return json_response(delivery_view(row, history[delivery_id]), status=202)
