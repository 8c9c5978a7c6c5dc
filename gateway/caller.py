"""Who is asking: the client's address (``X-Forwarded-For`` believed only from trusted
proxies), the binding their queue tokens carry, the base of the URLs they are sent to, and
the bearer token they present."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from functools import cached_property
from typing import Any, Protocol

from litestar import Request
from litestar.connection import ASGIConnection

from gateway.raw_calls import first_headers
from shared.errors import InvalidForwardedFor, MissingToken
from shared.settings import Settings
from shared.tokens import client_binding

AnyRequest = Request[Any, Any, Any]
AnyConnection = ASGIConnection[Any, Any, Any, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Linked(Protocol):
    """Whom links are made for: the base of the URLs they are sent to."""

    @property
    def base_url(self) -> str: ...


class Caller:
    """Who is asking. Each part is worked out when first needed (a status call needs none
    of the links or hashes a join does)."""

    def __init__(self, request: AnyConnection, settings: Settings) -> None:
        self._request = request
        self._settings = settings
        self.ip = client_ip(request, settings.trusted_proxies)
        """The client's own address, as far as trusted proxies vouch for it."""

    def _user_agent(self) -> str:
        return header(self._request, b"user-agent")

    @cached_property
    def address_key(self) -> str:
        """What per-address limits count: the address, or its IPv6 network (a /64 by
        default: one home or phone holds a whole /64, so counting single IPv6 addresses
        counts nothing)."""
        return address_key(self.ip, self._settings.ipv6_prefix)

    @cached_property
    def base_url(self) -> str:
        """The base of the links handed out (WAITROOM_PUBLIC_URL, else see base_from_host)."""
        settings = self._settings
        return settings.public_url or base_from_host(self._request, settings.allowed_hosts)

    @cached_property
    def binding(self) -> str | None:
        """A hash of IP + User-Agent when token binding is on, else None."""
        if not self._settings.token_binding:
            return None
        return client_binding(self.ip, self._user_agent())

    @cached_property
    def client_id(self) -> str:
        """A hash of the address key and User-Agent: who a proof-of-work challenge is for."""
        return client_binding(self.address_key, self._user_agent())


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def caller_of(request: AnyConnection, settings: Settings) -> Caller:
    return Caller(request, settings)


def base_from_host(request: AnyConnection, allowed: Sequence[str]) -> str:
    """Without WAITROOM_PUBLIC_URL, the base of links we hand out comes from the ``Host``
    header only if it names an allowed host (or a loopback name); otherwise links are
    relative to this gateway, so no one can have us write another site's address."""
    host = header(request, b"host").strip().lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host in allowed or name in allowed or name in LOOPBACK_HOSTS:
        return str(request.base_url).rstrip("/")
    return ""


def header(request: AnyConnection, name: bytes) -> str:
    """The first value of a header (``name`` in lower case), as the framework's
    ``headers.get`` reads it, without building its headers object (a join asks for two or
    three, and building that object cost it 2 % of the gateway's time, py-spy)."""
    return first_headers(request.scope, name).get(name, "")


def all_of(request: AnyConnection, name: bytes) -> list[str]:
    """Every value of a header (``name`` in lower case), in the order they came: lines of
    one header are one list (RFC 9110 5.3), and a proxy may add its own line rather than
    extend the client's."""
    return [value.decode("latin-1") for key, value in request.scope["headers"] if key == name]


def client_ip(request: AnyConnection, trusted_proxies: Sequence[Network]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the
    ``X-Forwarded-For`` chain is walked from the right (the entries our proxies appended)
    and the first hop that is not a trusted proxy is the client. Entries left of it were
    written by the client and are never read. A hop that is not an address where the walk
    needs one is refused (400), not passed on. If every hop is a trusted proxy, the client
    is the hop the nearest proxy saw (its own entry cannot be forged from outside). Every
    ``X-Forwarded-For`` line counts, in order: a proxy that adds a line of its own (HAProxy's
    ``option forwardfor``) leaves the client's own line first."""
    peer = request.client.host if request.client else ""
    if not trusted_proxies or not peer or not _trusted_peer(peer, tuple(trusted_proxies)):
        return peer
    forwarded = [h.strip() for line in all_of(request, b"x-forwarded-for") for h in line.split(",")]
    hops = [h for h in forwarded if h]
    if not hops:
        return peer
    for hop in reversed(hops):
        addr = _parse(hop)
        if addr is None:
            raise InvalidForwardedFor()
        if not _trusted(addr, trusted_proxies):
            return str(addr)
    return str(_parse(hops[-1]))


@functools.lru_cache(maxsize=16384)
def address_key(ip: str, ipv6_prefix: int) -> str:
    """The address for per-address limits: IPv4 as it is (an IPv4-mapped IPv6 address as
    its IPv4), IPv6 as its network of ``ipv6_prefix`` bits. Kept for the addresses seen
    last: every join asks, and parsing one was 4 % of a join's gateway time (py-spy)."""
    addr = _parse(ip)
    if addr is None:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    return str(addr)


def _parse(text: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@functools.lru_cache(maxsize=4096)
def _trusted_peer(peer: str, networks: tuple[Network, ...]) -> bool:
    """Whether the connection's peer is a trusted proxy: a proxy's few addresses are
    asked about on every request, so the answer is kept (parsing one costs microseconds)."""
    return _trusted(_parse(peer), networks)


def _trusted(addr: Address | None, networks: Sequence[Network]) -> bool:
    return addr is not None and any(addr in net for net in networks)


def bearer_token(request: AnyRequest, *, query_name: str | None = None) -> str:
    """The token of ``Authorization: Bearer``, or of the query parameter ``query_name``."""
    found = optional_bearer(request)
    if found:
        return found
    if query_name:
        token = request.query_params.get(query_name)
        if isinstance(token, str) and token:
            return token
    raise MissingToken()


def optional_bearer(request: AnyConnection) -> str | None:
    return bearer_of(request.headers.get("authorization", ""))


def bearer_of(authorization: str) -> str | None:
    """The token of an ``Authorization`` header's value, if it is ``Bearer <token>``."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None
