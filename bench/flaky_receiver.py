"""The flaky webhook receiver that bench.soak delivers to: an aiohttp app in its own process.

    python -m bench.flaky_receiver --port P [--fail-rate 0.2] [--seed S]

Every POST is answered 500 with probability `--fail-rate` (at random, so a delivery may fail several
times in a row and the dispatcher's whole retry schedule gets exercised), else 200. Before answering
it checks the Standard Webhooks signature against the secrets registered for the request's path, so a
delivery that arrives but could not be trusted counts as a failure of the service, not a success.

It remembers, per path, every `webhook-id` it answered 200 (what the sender may rightly count as
delivered), and how often an id it had already acknowledged came again (a duplicate delivery).

- `POST /_soak/secrets` `{"/path": ["whsec_…", …]}`: the secrets that sign each path's deliveries;
- `GET /_soak/report`: the counts, and the acknowledged ids per path.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field

import orjson
import uvloop
from aiohttp import web

from jobwire.webhooks import signing

# Standard Webhooks' recommended tolerance for a signature's timestamp
TIMESTAMP_TOLERANCE_S = 300


@dataclass
class Ledger:
    fail_rate: float
    rng: random.Random
    secrets: dict[str, list[str]] = field(default_factory=dict)
    requests: int = 0
    failed_on_purpose: int = 0
    # signed by none of the path's secrets, no secret registered for the path, or a stale timestamp
    bad_signatures: int = 0
    # requests for an id this receiver had already answered 200 on the same path
    repeats: int = 0
    acked: dict[str, set[str]] = field(default_factory=dict)

    def trusted(self, path: str, headers: dict[str, str], body: bytes) -> bool:
        msg_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        if not msg_id or not stamp.isdigit() or abs(time.time() - int(stamp)) > TIMESTAMP_TOLERANCE_S:
            return False
        offered = set(headers.get("webhook-signature", "").split())
        return any(signing.sign(s, msg_id, int(stamp), body) in offered for s in self.secrets.get(path, ()))


LEDGER = web.AppKey("ledger", Ledger)


async def webhook(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    body = await request.read()
    ledger.requests += 1
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not ledger.trusted(request.path, headers, body):
        ledger.bad_signatures += 1
        return web.Response(status=400, text="bad signature")
    if ledger.rng.random() < ledger.fail_rate:
        ledger.failed_on_purpose += 1
        return web.Response(status=500, text="flaky on purpose")
    acked = ledger.acked.setdefault(request.path, set())
    msg_id = headers["webhook-id"]
    if msg_id in acked:
        ledger.repeats += 1
    acked.add(msg_id)
    return web.Response(text="ok")


async def set_secrets(request: web.Request) -> web.Response:
    secrets: dict[str, list[str]] = orjson.loads(await request.read())
    request.app[LEDGER].secrets.update(secrets)
    return web.Response()


async def report(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    body = {
        "requests": ledger.requests,
        "failed_on_purpose": ledger.failed_on_purpose,
        "bad_signatures": ledger.bad_signatures,
        "repeats": ledger.repeats,
        "acked": {path: sorted(ids) for path, ids in ledger.acked.items()},
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def receiver_app(fail_rate: float, seed: int | None) -> web.Application:
    app = web.Application()
    app[LEDGER] = Ledger(fail_rate, random.Random(seed))
    app.router.add_post("/_soak/secrets", set_secrets)
    app.router.add_get("/_soak/report", report)
    app.router.add_post("/{tail:.*}", webhook)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="a webhook receiver failing at random, for bench.soak")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-rate", type=float, default=0.2, help="share of requests answered 500")
    parser.add_argument("--seed", type=int, help="for a repeatable sequence of failures")
    args = parser.parse_args()

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = receiver_app(args.fail_rate, args.seed)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
