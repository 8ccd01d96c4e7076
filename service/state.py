"""Typed keys for what the application and each request carry."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis

from jobwire.apikeys import Principal
from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.registry import Registry
from jobwire.scheduler import Scheduler
from jobwire.tokens import StreamTokens
from service.hub import EventHub
from service.limits import RateLimiter, StreamLimiter
from service.stats import QueueStats
from service.submitter import Submitter

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", ArqRedis)
KEYS = web.AppKey("keys", Keys)
REGISTRY = web.AppKey("registry", Registry)
TOKENS = web.AppKey("tokens", StreamTokens)
HUB = web.AppKey("hub", EventHub)
STATS = web.AppKey("stats", QueueStats)
SUBMITTER = web.AppKey("submitter", Submitter)
SCHEDULER = web.AppKey("scheduler", Scheduler)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
STREAM_LIMITER = web.AppKey("stream_limiter", StreamLimiter)

PRINCIPAL = web.RequestKey("principal", Principal)
