"""The `jobwire` command. Subcommands import what they run inside their function, so that the client
commands (submit, watch, keys) start without loading the server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from aiohttp import web
from pydantic import ValidationError

from jobwire import __version__, apikeys, db, liveness
from jobwire.config import Settings
from jobwire.job import iso
from jobwire.logs import configure, get_logger

log = get_logger("jobwire.cli")
T = TypeVar("T")


def _settings(**overrides: object) -> Settings:
    settings = Settings()
    clean = {k: v for k, v in overrides.items() if v is not None}
    if clean:
        settings = settings.model_copy(update=clean)
    configure(settings.resolved_log_format, settings.log_level)
    return settings


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _tune_gc() -> None:
    """A request allocates many short-lived objects; with the default threshold the collector runs
    every few requests and walks every long-lived object the imports created. Freezing those and
    collecting less often took the api's p99 submission latency from ~30 ms to ~12 ms under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _until_signalled() -> signal.Signals:
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return await received


# ---- subcommands -----------------------------------------------------------------------------


def cmd_api(args: argparse.Namespace) -> int:
    from service.app import create_app

    settings = _settings(host=args.host, port=args.port)
    _use_uvloop()
    app = create_app(settings)
    _tune_gc()
    # run_app stops accepting on SIGTERM/SIGINT, gives in-flight requests shutdown_timeout to
    # finish, runs the cleanup (closing pools) and exits
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout_s,
        print=lambda _: log.info("listening", host=settings.host, port=settings.port),
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.worker import WorkerService

    settings = _settings()
    _use_uvloop()

    async def main() -> None:
        service = WorkerService(settings, concurrency=args.concurrency, burst=args.burst)
        await service.start()
        _tune_gc()
        waiter = asyncio.ensure_future(_until_signalled())
        finished = asyncio.ensure_future(service.wait())
        await asyncio.wait({waiter, finished}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            log.info(
                "signal received, stopping", signal=waiter.result().name, grace_s=settings.worker_grace_s
            )
        await service.stop()
        waiter.cancel()

    asyncio.run(main())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    # migrate needs a session of its own (its advisory lock): the direct URL, never a pooler
    url = db.session_url(settings)
    address = db.server_address(url)
    told = False

    def waiting(exc: BaseException) -> None:
        nonlocal told
        if not told:
            told = True
            print(
                f"jobwire migrate: PostgreSQL at {address} is not accepting connections yet"
                f" ({_reason(exc)}); retrying for up to {args.wait:g} s",
                file=sys.stderr,
                flush=True,
            )

    async def run() -> bool:
        await db.wait_for_server(url, args.wait, waiting)
        return await db.migrate(url)

    try:
        created = asyncio.run(run())
    except db.UNAVAILABLE as exc:
        within = f" within {args.wait:g} s" if args.wait else " (--wait DURATION retries for a while)"
        print(
            f"jobwire migrate: PostgreSQL at {address} did not accept a connection{within}: {_reason(exc)}",
            file=sys.stderr,
        )
        return 1
    print(f"database {db.database_name(url)}: {'created and ' if created else ''}schema applied")
    return 0


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def cmd_health(args: argparse.Namespace) -> int:
    settings = _settings()
    alive, why = liveness.check(settings.liveness_dir, settings.namespace, args.role, args.max_age)
    print(f"jobwire health {args.role}: {'ok' if alive else 'not alive'}: {why}", flush=True)
    return 0 if alive else 1


def cmd_purge(args: argparse.Namespace) -> int:
    from jobwire.keys import Keys
    from jobwire.redis_client import create_redis
    from jobwire.registry import load_job_types
    from jobwire.retention import PURGED_TABLES, RetentionPolicy
    from workers.purger import Purger

    settings = _settings()
    # the job types' own retentions come from their modules, as in the workers
    policy = RetentionPolicy.from_settings(settings, load_job_types(settings.job_modules))

    async def run() -> int:
        redis = create_redis(settings)
        try:
            purger = Purger(settings, policy, redis, Keys(settings.namespace))
            report = await purger.pass_once(wait=True, dry_run=args.dry_run)
        finally:
            await redis.aclose()
        # jobs and batches first, then the rows that went with them (and the expired keys)
        rows = ", ".join(f"{report.rows[t]} {t}" for t in PURGED_TABLES if t not in ("jobs", "batches"))
        verb = "would purge" if args.dry_run else "purged"
        print(
            f"{verb} {report.jobs} jobs, {report.batches} batches ({rows})"
            f" and {report.expired_keys} expired idempotency keys in {report.duration_s:.2f} s"
        )
        if report.vacuumed:
            print(f"vacuumed {', '.join(report.vacuumed)}")
        return 0

    return asyncio.run(run())


def _with_conn(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        conn = await db.connect(settings)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def cmd_keys_create(args: argparse.Namespace) -> int:
    settings = _settings()
    try:
        apikeys.validate_tenant(args.tenant)
    except ValueError as exc:
        print(f"jobwire keys create: {exc}", file=sys.stderr)
        return 2

    key = _with_conn(settings, lambda conn: apikeys.create_key(conn, args.tenant, admin=args.admin))
    kind = "admin key (sees every tenant)" if args.admin else "key"
    print(f"created an API {kind} for tenant {args.tenant!r}; it is shown only once:")
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    rows = _with_conn(_settings(), lambda conn: apikeys.list_keys(conn, args.tenant))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r["id"],
                        "tenant": r["tenant"],
                        "prefix": r["key_prefix"],
                        "admin": r["is_admin"],
                        "created_at": iso(r["created_at"]),
                        "revoked_at": iso(r["revoked_at"]),
                    }
                    for r in rows
                ]
            )
        )
        return 0
    print(f"{'id':>6}  {'tenant':<20} {'key':<13} {'admin':<5} {'created':<20} revoked")
    for r in rows:
        revoked = r["revoked_at"].strftime("%Y-%m-%d %H:%M:%S") if r["revoked_at"] else "-"
        admin = "yes" if r["is_admin"] else "no"
        created = r["created_at"].strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{r['id']:>6}  {r['tenant']:<20} {r['key_prefix'] + '…':<13} {admin:<5} {created:<20} {revoked}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from service.auth import CACHE_TTL_S

    settings = _settings()
    row = _with_conn(settings, lambda conn: apikeys.revoke_key(conn, args.key))
    if row is None:
        print(
            "jobwire keys revoke: no such key (give the key itself or its id from `keys list`)",
            file=sys.stderr,
        )
        return 1
    print(
        f"revoked key {row['id']} ({row['key_prefix']}…) of tenant {row['tenant']!r}; running apis stop"
        f" accepting it within {CACHE_TTL_S:g} s (their key cache)"
    )
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from service.app import create_app
    from workers.dispatcher import Dispatcher
    from workers.worker import WorkerService

    generated = None
    if not os.environ.get("JOBWIRE_SECRET_KEY") and not Settings().secret_key:
        generated = secrets.token_urlsafe(32)
        os.environ["JOBWIRE_SECRET_KEY"] = generated
    settings = _settings(host=args.host, port=args.port)
    if generated:
        print(
            f"JOBWIRE_SECRET_KEY was not set; generated one for this run:\n  JOBWIRE_SECRET_KEY={generated}"
        )
    created = asyncio.run(db.migrate(db.session_url(settings)))
    log.info("database migrated", created=created)
    _use_uvloop()

    async def main() -> None:
        runner = web.AppRunner(
            create_app(settings), access_log=None, shutdown_timeout=settings.shutdown_timeout_s
        )
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        worker = WorkerService(settings, concurrency=args.concurrency)
        await worker.start()
        dispatcher = Dispatcher(settings)
        await dispatcher.start()
        _tune_gc()
        print(
            f"jobwire dev is running: api on http://{settings.host}:{settings.port}, one worker, "
            "one webhook dispatcher, "
            f"namespace {settings.namespace!r}. Ctrl-C stops it.",
            flush=True,
        )
        sig = await _until_signalled()
        log.info("signal received, stopping", signal=sig.name)
        await runner.cleanup()
        await worker.stop()
        await dispatcher.stop()

    asyncio.run(main())
    return 0


def cmd_dispatcher(args: argparse.Namespace) -> int:
    from workers.dispatcher import Dispatcher

    settings = _settings()
    _use_uvloop()

    async def main() -> None:
        dispatcher = Dispatcher(settings)
        await dispatcher.start()
        _tune_gc()
        sig = await _until_signalled()
        log.info("signal received, finishing the attempts in flight", signal=sig.name)
        await dispatcher.stop()

    asyncio.run(main())
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds from `90`, `90s`, `15m`, `2h` or `1d`."""
    unit = _UNITS.get(text[-1:].lower(), 0)
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 90, 90s, 15m, 2h or 1d)") from None
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"a duration is not negative: {text!r}")
    return seconds


def _timestamp(text: str) -> datetime:
    """An RFC 3339 time with its offset (the api refuses a time without one: so does this)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time with its offset, e.g. {text}+00:00")
    return when


def cmd_submit(args: argparse.Namespace) -> int:
    from jobwire.cli import watch as client
    from jobwire.cli.jobs import parse_labels

    return client.run(
        lambda: client.submit(
            args.type,
            client.parse_params(args.param, args.params_json),
            priority=args.priority,
            wait=args.wait,
            as_json=args.json,
            idempotency_key=args.idempotency_key,
            webhook_url=args.webhook_url,
            run_at=args.run_at,
            delay_s=args.delay,
            depends_on=args.depends_on,
            labels=parse_labels(args.label),
        )
    )


def cmd_watch(args: argparse.Namespace) -> int:
    from jobwire.cli import watch as client

    return client.run(lambda: client.watch(args.id, as_json=args.json))


def cmd_types(args: argparse.Namespace) -> int:
    from jobwire.cli import watch as client

    return client.run(lambda: client.types(as_json=args.json))


def cmd_schedules(args: argparse.Namespace) -> int:
    from jobwire.cli import schedules
    from jobwire.cli import watch as client

    def command() -> int:
        action = args.action
        if action == "list":
            return schedules.list_schedules(as_json=args.json)
        if action == "create":
            return schedules.create(
                args.name,
                args.type,
                client.parse_params(args.param, args.params_json),
                cron=args.cron,
                interval_s=args.every,
                timezone=args.timezone,
                priority=args.priority,
                overlap=args.overlap,
                paused=args.paused,
                description=args.description,
                as_json=args.json,
            )
        if action in ("pause", "resume"):
            return schedules.set_paused(args.schedule, action == "pause", as_json=args.json)
        if action == "trigger":
            return schedules.trigger(args.schedule, wait=args.wait, as_json=args.json)
        return schedules.delete(args.schedule)

    return client.run(command)


def cmd_jobs(args: argparse.Namespace) -> int:
    from jobwire.cli import jobs
    from jobwire.cli import watch as client

    return client.run(
        lambda: jobs.bulk(
            args.action,
            statuses=args.status,
            job_type=args.type,
            labels=jobs.parse_labels(args.label),
            batch_id=args.batch,
            schedule_id=args.schedule,
            created_before=args.created_before,
            tenant=args.tenant,
            every=args.all,
            dry_run=args.dry_run,
            yes=args.yes,
            as_json=args.json,
        )
    )


def _jobs_parser(sub: Any) -> None:
    p = sub.add_parser(
        "jobs", help="cancel or retry every job matching a filter (JOBWIRE_URL, JOBWIRE_API_KEY)"
    )
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (
        ("cancel", "cancel every unfinished job matching the filter (a running one is interrupted)"),
        ("retry", "retry every failed or cancelled job matching the filter"),
    ):
        a = actions.add_parser(
            action,
            help=text,
            description=f"{text[0].upper()}{text[1:]}. Every filter given must hold; without one, --all."
            " Counts first and asks, unless --yes.",
        )
        a.add_argument("--label", action="append", default=[], metavar="K=V", help="carries this label")
        a.add_argument("--status", action="append", default=[], metavar="STATUS", help="in this status")
        a.add_argument("--type", metavar="TYPE", help="of this job type")
        a.add_argument("--batch", metavar="ID", help="in this batch")
        a.add_argument("--schedule", metavar="ID", help="submitted by this schedule")
        a.add_argument("--created-before", metavar="TIME", type=_timestamp, help="an RFC 3339 time")
        a.add_argument("--tenant", help="the tenant to act on (admin keys must name one)")
        a.add_argument("--all", action="store_true", help="act on every job when no filter is given")
        a.add_argument("--dry-run", action="store_true", help="only count the matching jobs")
        a.add_argument("--yes", "-y", action="store_true", help="do not ask first")
        a.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(run=cmd_jobs)


def cmd_batch(args: argparse.Namespace) -> int:
    from jobwire.cli import batches
    from jobwire.cli import watch as client

    def command() -> int:
        try:
            if args.action == "submit":
                return batches.submit(
                    args.file,
                    wait=args.wait,
                    as_json=args.json,
                    webhook_url=args.webhook_url,
                    labels=args.label,
                    idempotency_key=args.idempotency_key,
                )
            if args.action == "watch":
                return batches.watch(args.id, as_json=args.json)
            return batches.cancel(args.id, as_json=args.json)
        except batches.BatchInterrupted as stop:
            batch_id = client.visible(stop.batch_id)
            print(
                f"\njobwire: stopped following batch {batch_id}; its jobs keep running. Follow it again"
                f" with:\n  jobwire batch watch {batch_id}",
                file=sys.stderr,
            )
            return client.EXIT_INTERRUPTED

    return client.run(command)


def _batch_parser(sub: Any) -> None:
    p = sub.add_parser("batch", help="submit and follow batches of jobs (JOBWIRE_URL, JOBWIRE_API_KEY)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser(
        "submit",
        help="submit the jobs of a JSON Lines file as one batch; prints its id",
        description="Submit one job per line of FILE (a submission's body: type, params, priority, "
        "labels, depends_on with indexes of earlier lines) as one batch, all or nothing; with --wait, "
        "follow it with one progress bar until every job has ended.",
    )
    a.add_argument("file", metavar="FILE.jsonl", help="one job per line; - reads standard input")
    a.add_argument("--webhook-url", metavar="URL", help="receives batch.completed or batch.cancelled, once")
    a.add_argument("--label", action="append", default=[], metavar="K=V", help="a label of the batch")
    a.add_argument(
        "--idempotency-key", metavar="KEY", help="submitting again with the same key returns the same batch"
    )
    a.add_argument(
        "--wait",
        action="store_true",
        help="follow the batch to its end; exit 1 if a job failed or was cancelled",
    )
    a.add_argument("--json", action="store_true", help="print the batch as JSON (for scripts)")
    a = actions.add_parser("watch", help="follow a batch to its end")
    a.add_argument("id", help="the batch id")
    a.add_argument("--json", action="store_true", help="print the final batch as JSON")
    a = actions.add_parser("cancel", help="cancel every unfinished job of a batch")
    a.add_argument("id", help="the batch id")
    a.add_argument("--json", action="store_true", help="print the batch as JSON")
    p.set_defaults(run=cmd_batch)


def _schedules_parser(sub: Any) -> None:
    p = sub.add_parser("schedules", help="manage schedules (JOBWIRE_URL, JOBWIRE_API_KEY)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="every schedule: timetable, next run, last run and its job")
    a.add_argument("--json", action="store_true", help="print the schedules as JSON")
    a = actions.add_parser(
        "create",
        help="create a schedule; prints its id on the last line",
        description="Create a schedule that submits a job of TYPE on a cron timetable or every DURATION.",
    )
    a.add_argument("name", help="unique among your schedules")
    a.add_argument("type", help="job type, e.g. report.generate")
    when = a.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="5 fields, 6 with seconds first, or @daily, @hourly, …")
    when.add_argument(
        "--every",
        metavar="DURATION",
        type=_duration,
        help="an interval: 90, 90s, 15m, 2h or 1d (at least 1 s)",
    )
    a.add_argument("--timezone", default="UTC", help="IANA zone of the cron's times (default UTC)")
    a.add_argument("--param", action="append", default=[], metavar="K=V", help="a param; V is JSON or text")
    a.add_argument("--params-json", metavar="JSON", help="params as one JSON object")
    a.add_argument("--priority", choices=["normal", "high"], default="normal", help="of the jobs it submits")
    a.add_argument(
        "--overlap", choices=["skip", "allow"], default="skip", help="while the last run is unfinished"
    )
    a.add_argument("--paused", action="store_true", help="create it paused")
    a.add_argument("--description", default="", help="free text, shown in lists and the dashboard")
    a.add_argument("--json", action="store_true", help="print the schedule as JSON")
    for action, text in (("pause", "pause a schedule"), ("resume", "resume a schedule from its next slot")):
        a = actions.add_parser(action, help=text)
        a.add_argument("schedule", help="its id or name")
        a.add_argument("--json", action="store_true", help="print the schedule as JSON")
    a = actions.add_parser("trigger", help="submit the schedule's job now; prints the job id")
    a.add_argument("schedule", help="its id or name")
    a.add_argument("--wait", action="store_true", help="follow the job to its end; exit 1 if it fails")
    a.add_argument("--json", action="store_true", help="print the job as JSON")
    a = actions.add_parser("delete", help="delete a schedule (its jobs stay)")
    a.add_argument("schedule", help="its id or name")
    p.set_defaults(run=cmd_schedules)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobwire", description="jobwire: jobs over HTTP, run by ARQ workers."
    )
    parser.add_argument("--version", action="version", version=f"jobwire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("api", help="run the HTTP api")
    p.add_argument("--host", help="listen address (default JOBWIRE_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default JOBWIRE_PORT or 8000)")
    p.set_defaults(run=cmd_api)

    p = sub.add_parser("worker", help="run an ARQ worker")
    p.add_argument(
        "--concurrency", type=int, help="jobs run at once (default JOBWIRE_WORKER_CONCURRENCY or 10)"
    )
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    p.set_defaults(run=cmd_worker)

    p = sub.add_parser("migrate", help="create the database if missing and apply schema.sql")
    p.add_argument(
        "--wait",
        metavar="DURATION",
        type=_duration,
        default=0,
        help="retry connecting to PostgreSQL for this long (90, 90s, 2m) while it starts; "
        "default: fail at once",
    )
    p.set_defaults(run=cmd_migrate)

    p = sub.add_parser(
        "purge",
        help="delete the finished jobs past their retention now (one pass, as the workers run it)",
        description="Delete the finished jobs past their retention, with their events, deliveries and "
        "idempotency keys, then the settled batches past theirs that no job is left in, and the "
        "expired idempotency keys; print how many went. Waits for a pass under way elsewhere to end "
        "first.",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    p.set_defaults(run=cmd_purge)

    p = sub.add_parser(
        "health",
        help="exit 0 if this host's worker or dispatcher completed a loop lately (a container healthcheck)",
        description="Checks the liveness file the worker or dispatcher of JOBWIRE_NAMESPACE touches "
        "in JOBWIRE_LIVENESS_DIR each time its loop reaches Redis or PostgreSQL; exit 1 if it is "
        "missing or old.",
    )
    p.add_argument("role", choices=liveness.ROLES, help="which process to check")
    p.add_argument(
        "--max-age",
        metavar="DURATION",
        type=_duration,
        default=30.0,
        help="the longest since the last loop that counts as alive (default 30 s)",
    )
    p.set_defaults(run=cmd_health)

    p = sub.add_parser("keys", help="manage API keys")
    keys_sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = keys_sub.add_parser("create", help="create an API key; prints it on the last line")
    k.add_argument("--tenant", required=True, help="the tenant the key belongs to")
    k.add_argument("--admin", action="store_true", help="the key sees every tenant")
    k.set_defaults(run=cmd_keys_create)
    k = keys_sub.add_parser("list", help="list API keys (their first characters, never the keys)")
    k.add_argument("--tenant", help="only this tenant's keys")
    k.add_argument("--json", action="store_true", help="print a JSON array")
    k.set_defaults(run=cmd_keys_list)
    k = keys_sub.add_parser("revoke", help="revoke an API key")
    k.add_argument("key", help="the key itself, or its id from `jobwire keys list`")
    k.set_defaults(run=cmd_keys_revoke)

    p = sub.add_parser("dev", help="migrate, then run api + worker + dispatcher in one process (local use)")
    p.add_argument("--host", help="listen address (default JOBWIRE_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default JOBWIRE_PORT or 8000)")
    p.add_argument(
        "--concurrency", type=int, help="jobs run at once (default JOBWIRE_WORKER_CONCURRENCY or 10)"
    )
    p.set_defaults(run=cmd_dev)

    p = sub.add_parser(
        "submit",
        help="submit a job (JOBWIRE_URL, JOBWIRE_API_KEY)",
        description="Submit a job; with --wait, follow it with a live progress bar until it ends.",
    )
    p.add_argument("type", help="job type, e.g. demo.sleep")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a param; V is JSON or text")
    p.add_argument("--params-json", metavar="JSON", help="params as one JSON object")
    p.add_argument(
        "--priority",
        choices=["normal", "high"],
        default="normal",
        help="high starts before queued normal jobs",
    )
    p.add_argument(
        "--idempotency-key", metavar="KEY", help="submitting again with the same key returns the same job"
    )
    p.add_argument("--webhook-url", metavar="URL", help="receives the job's terminal event, signed")
    p.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="ID",
        help="a job that must complete first (repeatable); the job is waiting until then",
    )
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="a label (repeatable)")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--run-at",
        metavar="TIME",
        type=_timestamp,
        help="run at this RFC 3339 time, e.g. 2026-11-24T09:00:00+01:00",
    )
    when.add_argument(
        "--delay", metavar="DURATION", type=_duration, help="run after this long: 90, 90s, 15m, 2h or 1d"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the job to its end (Ctrl-C stops following, not the job); exit 1 if it fails",
    )
    p.add_argument("--json", action="store_true", help="print the job as JSON (for scripts)")
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("watch", help="follow a job to its end (JOBWIRE_URL, JOBWIRE_API_KEY)")
    p.add_argument("id", help="the job id")
    p.add_argument("--json", action="store_true", help="print the final job as JSON")
    p.set_defaults(run=cmd_watch)

    p = sub.add_parser("types", help="list the job types and their params (JOBWIRE_URL, JOBWIRE_API_KEY)")
    p.add_argument("--json", action="store_true", help="print them as JSON, params as JSON schemas")
    p.set_defaults(run=cmd_types)
    _schedules_parser(sub)
    _jobs_parser(sub)
    _batch_parser(sub)

    p = sub.add_parser("dispatcher", help="run the webhook dispatcher")
    p.set_defaults(run=cmd_dispatcher)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ValidationError as exc:
        # each setting and what is wrong with it; never the value (it may be the secret key)
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        print("jobwire: invalid settings:\n" + "\n".join(lines), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130  # Ctrl-C outside a client command's own handling: the shell's code, no traceback


if __name__ == "__main__":
    sys.exit(main())
