"""Who is asking: the client's address (``X-Forwarded-For`` believed only from trusted
proxies), the binding their queue tokens carry, the base of the URLs they are sent to, and
the bearer token they present."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from litestar import Request

from shared.errors import MissingToken
from shared.settings import Settings
from shared.tokens import client_binding

AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True)
class Caller:
    ip: str
    base_url: str
    binding: str | None
    """A hash of IP + User-Agent when token binding is on, else None."""


def caller_of(request: AnyRequest, settings: Settings) -> Caller:
    ip = client_ip(request, settings)
    binding = None
    if settings.token_binding:
        binding = client_binding(ip, request.headers.get("user-agent", ""))
    base_url = settings.public_url or str(request.base_url).rstrip("/")
    return Caller(ip=ip, base_url=base_url, binding=binding)


def client_ip(request: AnyRequest, settings: Settings) -> str:
    peer = request.client.host if request.client else ""
    if not settings.trusted_proxies or not peer:
        return peer
    chain = [peer]
    forwarded = request.headers.get("x-forwarded-for", "")
    chain = [p.strip() for p in forwarded.split(",") if p.strip()] + chain
    # walk from the nearest hop back while the hop is one of our proxies
    for hop in reversed(chain):
        try:
            addr = ipaddress.ip_address(hop)
        except ValueError:
            return hop
        if not any(addr in net for net in settings.trusted_proxies):
            return hop
    return chain[0]


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


def optional_bearer(request: AnyRequest) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None
