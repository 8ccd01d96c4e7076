"""jobwire/webhooks/ssrf.py: canonical webhook URLs and the destinations allowed, at registration and
at connect time."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from aiohttp.abc import ResolveResult
from pydantic import BaseModel, ValidationError
from yarl import URL

from jobwire.webhooks import ssrf
from jobwire.webhooks.ssrf import BlockedDestination, check_url, is_public
from service import openapi, schemas

# (address, may a webhook go there)
ADDRESSES = [
    ("93.184.216.34", True),
    ("8.8.8.8", True),
    ("2606:4700:4700::1111", True),
    ("2a00:1450:4001:80b::200e", True),
    ("::ffff:93.184.216.34", True),  # IPv4-mapped, of a public address
    ("2002:5db8:d822::1", True),  # 6to4 around 93.184.216.34
    # IPv4
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("192.168.1.1", False),
    ("100.64.0.1", False),  # carrier-grade NAT
    ("169.254.169.254", False),  # cloud metadata
    ("0.0.0.0", False),
    ("0.1.2.3", False),
    ("192.0.0.9", False),  # IETF protocol assignments (is_global calls this one global)
    ("192.0.2.1", False),  # documentation
    ("192.88.99.1", False),  # 6to4 relay anycast
    ("198.18.0.1", False),  # benchmarking
    ("224.0.0.1", False),  # multicast
    ("239.255.255.250", False),
    ("240.0.0.1", False),  # reserved
    ("255.255.255.255", False),
    # IPv6
    ("::", False),  # unspecified
    ("::1", False),
    ("::a00:1", False),  # IPv4-compatible ::/96, around 10.0.0.1
    ("::5db8:d822", False),  # IPv4-compatible, even around a public address (deprecated form)
    ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
    ("::ffff:a00:1", False),
    ("::ffff:0:a00:1", False),  # IPv4-translated ::ffff:0:0:0/96 (SIIT)
    ("::ffff:0:5db8:d822", False),
    ("64:ff9b::a00:1", False),  # NAT64 well-known prefix
    ("64:ff9b::5db8:d822", False),
    ("64:ff9b:1::a00:1", False),  # NAT64 local-use prefix
    ("100::1", False),  # discard-only
    ("2001::1", False),  # Teredo
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    ("2001:2::1", False),  # benchmarking
    ("2001:10::1", False),  # ORCHID
    ("2001:db8::1", False),  # documentation
    ("3fff::1", False),  # documentation (RFC 9637)
    ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
    ("2002:a00:1::1", False),  # 6to4 around 10.0.0.1
    ("fc00::1", False),  # unique local
    ("fd00:ec2::254", False),  # EC2 metadata
    ("fe80::1", False),  # link-local
    ("fec0::1", False),  # site-local
    ("ff02::1", False),  # multicast
    ("ff0e::1", False),
    ("5f00::1", False),  # SRv6 SIDs
]


def _answering(name: str, address: str) -> Any:
    """A getaddrinfo that answers `address` for `name` and asks the system for anything else."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host == name:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port or 0))]
        return real(host, port, *args, **kwargs)

    return getaddrinfo


CANONICAL = [
    ("https://example.com/hook", "https://example.com/hook"),
    ("HTTPS://Example.COM/Hook", "https://example.com/Hook"),  # the path keeps its case
    ("http://example.com", "http://example.com/"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),
    ("http://example.com:/a", "http://example.com/a"),
    ("https://bücher.example/ä?q=é", "https://xn--bcher-kva.example/%C3%A4?q=%C3%A9"),
    ("https://example.com/a/./b/../c", "https://example.com/a/c"),
    ("https://example.com?x=1", "https://example.com/?x=1"),
    ("http://[0:0::0001]:80/", "http://[::1]/"),
    ("http://[2606:4700:4700:0:0:0:0:1111]/", "http://[2606:4700:4700::1111]/"),
]


REFUSED = [
    " https://example.com/hook",  # the audit's example: it made a job that never finished
    "https://example.com/hook ",
    "\thttps://example.com/",
    "https://example.com/a b",
    "https://exa\nmple.com/",
    "https://example.com/\x7f",
    "https://\u200bexample.com/",  # zero-width space
    "https://example.com\\@evil.example/",
    "https://example.com/#fragment",
    "https://user:pass@example.com/",
    "https://user@example.com/",
    "ftp://example.com/",
    "javascript:alert(1)",
    "//example.com/",
    "https:/example.com/",
    "https:example.com",
    "https://",
    "https://:443/",
    "https://example.com:0/",
    "https://example.com:65536/",
    "https://example.com:\uff11\uff12/",  # fullwidth digits
    "https://example.com:x/",
    "https://[::1/",
    "https://[::1]x/",
    "https://[fe80::1%25eth0]/",
    "https://2130706433/",  # 127.0.0.1 to inet_aton
    "https://127.1/",
    "https://0x7f.0.0.1/",
    "https://127.0.0.01/",
    "https://example..com/",
    "https://example.com./",
    "https://exa!mple.com/",
    "https://example.com/" + "a" * 3000,
]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # v4-mapped loopback
        ("::ffff:93.184.216.34", True),
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 around 10.0.0.1
        ("fd00:ec2::254", False),
    ],
)
def test_webhook_destinations_must_be_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_webhook_urls_are_checked_where_they_are_accepted() -> None:
    await check_url("http://93.184.216.34/hook", allow_private=False)
    await check_url("http://127.0.0.1:9000/hook", allow_private=True)
    for url in (
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "https://[::1]/x",
        "http://169.254.169.254/",
    ):
        with pytest.raises(BlockedDestination):
            await check_url(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "blocked"),
    [
        ("http://127.0.0.1/x", True),
        ("http://[::1]/x", True),
        ("http://[::ffff:127.0.0.1]/x", True),
        ("http://[::ffff:a00:1]/x", True),  # ::ffff:10.0.0.1
        ("http://169.254.169.254/", True),
        ("http://100.64.0.1/", True),
        ("http://8.8.8.8/", False),
        ("http://example.com/", False),  # a name: checked by the resolver when dialled
    ],
)
def test_literal_addresses_are_checked_before_dialling(url: str, blocked: bool) -> None:
    assert (ssrf.literal_blocked(url) is not None) is blocked


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
def test_the_address_filter(address: str, public: bool) -> None:
    assert ssrf.is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
async def test_the_registration_check_walks_the_table(
    address: str, public: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    literal = f"[{address}]" if ":" in address else address
    monkeypatch.setattr(socket, "getaddrinfo", _answering("dest.example", address))
    for url in (f"https://{literal}/hook", "https://dest.example/hook"):
        if public:
            await ssrf.check_url(url, allow_private=False)
        else:
            with pytest.raises(ssrf.BlockedDestination) as caught:
                await ssrf.check_url(url, allow_private=False)
            # says only that it is not allowed: neither where a name resolves nor the address
            assert str(caught.value) == ssrf.NOT_ALLOWED
        await ssrf.check_url(url, allow_private=True)


async def test_a_name_that_does_not_resolve_gets_the_same_answer_as_a_private_one() -> None:
    with pytest.raises(ssrf.BlockedDestination) as caught:
        await ssrf.check_url("https://no-such-host.invalid/hook", allow_private=False)
    assert str(caught.value) == ssrf.NOT_ALLOWED


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
async def test_the_connect_time_resolver_walks_the_table(address: str, public: bool) -> None:
    resolver = ssrf.GuardedResolver()

    async def inner(host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        answer: ResolveResult = {
            "hostname": host,
            "host": address,
            "port": port,
            "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
            "proto": 6,
            "flags": 0,
        }
        return [answer]

    resolver._inner.resolve = inner  # type: ignore[method-assign]
    try:
        if public:
            assert [r["host"] for r in await resolver.resolve("dest.example", 443)] == [address]
        else:
            with pytest.raises(ssrf.BlockedDestination) as caught:
                await resolver.resolve("dest.example", 443)
            assert address not in str(caught.value)  # the attempt history is the tenant's to read
        literal = f"[{address}]" if ":" in address else address
        assert (ssrf.literal_blocked(f"https://{literal}/hook") is None) is public
    finally:
        await resolver.close()


@pytest.mark.parametrize(("given", "stored"), CANONICAL)
def test_urls_are_stored_in_one_canonical_form(given: str, stored: str) -> None:
    assert ssrf.canonical_url(given) == stored
    assert ssrf.canonical_url(stored) == stored  # a fixed point
    assert str(URL(stored)) == stored  # exactly what the dispatcher's HTTP client dials


@pytest.mark.parametrize("given", REFUSED)
def test_ambiguous_or_unsafe_urls_are_refused(given: str) -> None:
    with pytest.raises(ValueError):
        ssrf.canonical_url(given)


def _request_models() -> list[type[BaseModel]]:
    # the body of every operation the api describes (a test holds those to the app's routes)
    refs = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for op in openapi.OPERATIONS.values()
        if "requestBody" in op
    }
    return [getattr(schemas, ref.rsplit("/", 1)[-1]) for ref in sorted(refs)]


def test_every_url_field_of_every_request_model_is_canonicalised() -> None:
    fields = [
        (model, name) for model in _request_models() for name in model.model_fields if "url" in name.lower()
    ]
    found = {f"{m.__name__}.{n}" for m, n in fields}
    # the walk finds them (a model renamed or moved would otherwise pass with nothing checked)
    assert {"SubmitJob.webhook_url", "CreateEndpoint.url", "UpdateEndpoint.url"} <= found, found
    for model, name in fields:
        validator = model.__pydantic_validator__
        for given, stored in CANONICAL:
            instance = model.model_construct()
            validator.validate_assignment(instance, name, given)
            assert getattr(instance, name) == stored, (model, name, given)
        for given in REFUSED:
            with pytest.raises(ValidationError):
                validator.validate_assignment(model.model_construct(), name, given)
