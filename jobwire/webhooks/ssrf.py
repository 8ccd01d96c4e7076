"""Webhook URLs: the one canonical form every URL is stored in, and which destinations are allowed
(only public addresses, unless JOBWIRE_WEBHOOK_ALLOW_PRIVATE=true).

A URL is canonicalised and checked where it is accepted (a job's `webhook_url`, a registered
endpoint's `url`, on create and on PATCH) by resolving its host; the webhook dispatcher checks again
the address it actually dials, since DNS can answer differently a second time (rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

# ---- the canonical form ----------------------------------------------------------------------

_PORT = re.compile(r"[0-9]{1,5}")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
# a host whose last label is a number is an IPv4 address to every resolver (inet_aton reads
# "2130706433", "127.1" and "0x7f.0.0.1" as 127.0.0.1): only the dotted-quad form is accepted
_NUMERIC_HOST = re.compile(r"(?:.*\.)?(?:[0-9]+|0x[0-9a-f]*)", re.IGNORECASE)


def canonical_url(value: str) -> str:
    """The one stored form of a webhook URL; ValueError (with the reason) when there is none.

    Refused, because they are ambiguous or unsafe rather than merely unusual: whitespace and control
    characters anywhere, backslashes, a fragment, user info (credentials), schemes other than http
    and https, IPv6 zone ids, IPv4 addresses not written as a dotted quad, ports outside 1-65535.
    Normalised, because each has exactly one meaning: scheme and host to lower case, international
    host names to IDNA (punycode), the default port dropped, an empty path to `/`, dot segments
    removed, characters outside ASCII in path and query percent-encoded as UTF-8. The result is the
    URL the dispatcher's HTTP client dials, byte for byte, and canonical_url(result) == result.
    """
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain whitespace or control characters")
    if "\\" in value:
        raise ValueError("must not contain backslashes")
    if "#" in value:
        raise ValueError("must not have a fragment (#…): it is never sent to the server")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not value.lower().startswith(parts.scheme + "://"):
        raise ValueError("must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not contain user info (user:password@); receivers authenticate by signature")
    if parts.netloc.startswith("["):
        host, bracket, port = parts.netloc.partition("]")
        host, rest = host + bracket, port
        if rest and not rest.startswith(":"):
            raise ValueError("is not a valid URL")
        port = rest[1:]
    else:
        host, _, port = parts.netloc.partition(":")
    if not host:
        raise ValueError("must name a host")
    if port and (not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535):
        raise ValueError("has an invalid port (use 1-65535)")
    if host.startswith("["):
        if "%" in host:
            raise ValueError("must not use an IPv6 zone id")
        try:
            literal = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError("has an invalid IPv6 address") from None
        # one spelling of the address: compressed, lower case
        value = value.replace(parts.netloc, f"[{literal.compressed}]" + (f":{port}" if port else ""), 1)
    elif _NUMERIC_HOST.fullmatch(host.rstrip(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError("has an invalid IPv4 address (write it as four decimal numbers)") from None
    try:
        url = URL(value)
    except ValueError as exc:  # yarl's IDNA encoding refuses the host
        raise ValueError(f"has an invalid host name ({exc})") from None
    raw_host = url.raw_host or ""
    if not raw_host.startswith("[") and ":" not in raw_host and not _HOST_NAME.fullmatch(raw_host):
        raise ValueError("has an invalid host name")
    canonical = str(url)
    if not urlsplit(canonical).path:
        canonical += "/"  # "http://host" and "http://host/" are one request; the query keeps its "/"
    if len(canonical) > MAX_URL_LENGTH:
        raise ValueError(f"is longer than {MAX_URL_LENGTH} characters once encoded")
    return canonical


def canonical_url_field(value: str | None) -> str | None:
    """The pydantic field validator of every URL field the api accepts (None passes)."""
    return None if value is None else canonical_url(value)


# ---- which addresses are public --------------------------------------------------------------

_BLOCKED_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "192.0.0.0/24",  # IETF protocol assignments (is_global makes exceptions for two anycast ones)
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "198.18.0.0/15",  # benchmarking
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
]
# IPv6 unicast that is globally routed lives in 2000::/3; everything else (::/8 with the IPv4-
# compatible ::/96 and the translated ::ffff:0:0:0/96 forms, NAT64 64:ff9b::/96 and 64:ff9b:1::/48,
# discard-only 100::/64, ULA fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast
# ff00::/8, SRv6 5f00::/16) is refused, except IPv4-mapped addresses, which are judged by their
# IPv4 address. Inside 2000::/3, these are not destinations either:
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_BLOCKED_V6 = [
    ipaddress.ip_network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "fd00:ec2::/32",  # EC2's IPv6 metadata endpoint (ULA, so outside 2000::/3 anyway)
    )
]


def _public_v4(address: ipaddress.IPv4Address) -> bool:
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not any(address in net for net in _BLOCKED_V4)
    )


def is_public(address: Address) -> bool:
    """Whether a webhook may be sent to this address."""
    if isinstance(address, ipaddress.IPv4Address):
        return _public_v4(address)
    if address.ipv4_mapped is not None:
        return _public_v4(address.ipv4_mapped)
    if address.scope_id is not None or address not in _GLOBAL_UNICAST_V6:
        return False
    if address.sixtofour is not None and not _public_v4(address.sixtofour):
        return False  # 6to4 (2002::/16) reaches the IPv4 address inside it
    return address.is_global and not any(address in net for net in _BLOCKED_V6)


# ---- checking a URL where it is accepted -----------------------------------------------------


class BlockedDestination(ValueError):
    """The URL's host does not resolve to public addresses only. The message says no more than
    that: which address a name resolves to, or whether it resolves at all, is not for a tenant to
    learn through the api (it maps the internal network)."""


class DestinationUnchecked(Exception):
    """The host could not be resolved in time (a slow or hung name, or too many such at once)."""


# Lookups at submission run on threads of their own (getaddrinfo blocks and cannot be cancelled),
# at most MAX_LOOKUPS at a time: a name that never answers holds one thread until the system
# resolver gives up, but never the event loop's default executor, and never more than its share.
RESOLVE_TIMEOUT_S = 3.0
MAX_LOOKUPS = 64
_lookup_threads = ThreadPoolExecutor(max_workers=MAX_LOOKUPS, thread_name_prefix="webhook-dns")
_lookup_slots = threading.BoundedSemaphore(MAX_LOOKUPS)

NOT_ALLOWED = "the URL's host is not an allowed webhook destination: webhooks go to public addresses only"


async def _lookup(host: str, port: int) -> list[Address]:
    slots = _lookup_slots
    if not slots.acquire(blocking=False):
        raise DestinationUnchecked("too many host names are being resolved right now")

    def run() -> list[tuple[Any, ...]]:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)

    try:
        future: Future[list[tuple[Any, ...]]] = _lookup_threads.submit(run)
    except BaseException:
        slots.release()
        raise
    future.add_done_callback(lambda _: slots.release())  # when the thread is free again
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.wrap_future(future)
    except TimeoutError:
        raise DestinationUnchecked(f"the host did not resolve within {RESOLVE_TIMEOUT_S:g} s") from None
    return [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise BlockedDestination when the (canonical) URL's host is not public or does not resolve,
    DestinationUnchecked when it could not be resolved in time."""
    if allow_private:
        return
    parsed = URL(url)
    host = (parsed.raw_host or "").strip("[]")
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = await _lookup(host, parsed.port or 0)
        except (OSError, UnicodeError):
            raise BlockedDestination(NOT_ALLOWED) from None
    if not addresses or not all(is_public(a) for a in addresses):
        raise BlockedDestination(NOT_ALLOWED)


# ---- checking the address the dispatcher dials -----------------------------------------------


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops non-public addresses, so the connection is only ever made to an
    address that passed the check (the dispatcher's guard against DNS rebinding). aiohttp does not
    resolve IP literals, so callers check those with `literal_blocked` first."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if is_public(ipaddress.ip_address(r["host"]))]
        if not allowed:
            # recorded in the delivery's attempt history, which the tenant reads: no addresses
            raise BlockedDestination("the host resolves to no public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def literal_blocked(url: str) -> str | None:
    """Why a URL whose host is an IP literal may not be dialled, or None."""
    try:
        host = (urlsplit(url).hostname or "").strip("[]")
    except ValueError:
        return "not a valid URL"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if is_public(address) else f"{host} is not a public address"
