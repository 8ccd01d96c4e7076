"""Which webhook destinations are allowed: only public addresses, unless
JOBWIRE_WEBHOOK_ALLOW_PRIVATE=true.

A URL is checked where it is accepted (a job's `webhook_url`, a registered endpoint) by resolving its
host; the webhook dispatcher checks again the address it actually dials, since DNS can answer
differently a second time (rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# ipaddress's is_global leaves some ranges a webhook must never reach
_EXTRA_BLOCKED = [
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (is_global is False already; explicit)
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, cloud metadata (169.254.169.254)
    ipaddress.ip_network("fd00:ec2::/32"),  # EC2's IPv6 metadata endpoint
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64, which can reach IPv4 private space
    ipaddress.ip_network("0.0.0.0/8"),
]


class BlockedDestination(ValueError):
    """The URL's host resolves to an address webhooks may not reach."""


def require_http_url(value: str | None) -> str | None:
    """A pydantic field validator: an absolute http(s) URL with a host (None passes)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
    if not address.is_global or address.is_multicast:
        return False
    return not any(address in net for net in _EXTRA_BLOCKED if net.version == address.version)


async def resolve(host: str, port: int) -> list[Address]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise BlockedDestination when the URL's host is not public (or does not resolve)."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise BlockedDestination(f"the host {host!r} does not resolve: {exc}") from None
    blocked = [str(a) for a in addresses if not is_public(a)]
    if blocked or not addresses:
        raise BlockedDestination(
            f"{host!r} resolves to a non-public address ({', '.join(blocked) or 'none'}); webhooks go to "
            "public addresses only (set JOBWIRE_WEBHOOK_ALLOW_PRIVATE=true for local receivers)"
        )


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
            addresses = ", ".join(r["host"] for r in results)
            raise BlockedDestination(f"{host!r} resolves to non-public addresses only ({addresses})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def literal_blocked(url: str) -> str | None:
    """Why a URL whose host is an IP literal may not be dialled, or None."""
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if is_public(address) else f"{host} is not a public address"
