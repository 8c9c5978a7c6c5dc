"""Who is asking: the client address (believing X-Forwarded-For only from trusted
proxies) and the bearer token."""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar import Request

from shared.errors import MissingToken
from shared.settings import Settings


def client_ip(request: Request[Any, Any, Any], settings: Settings) -> str:
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


def bearer(request: Request[Any, Any, Any], *, query_name: str | None = None) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if query_name:
        token = request.query_params.get(query_name)
        if isinstance(token, str) and token:
            return token
    raise MissingToken()
