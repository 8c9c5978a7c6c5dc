"""The small HTTP pieces of the guard: where to send a visitor back to, the session cookie,
whether the visitor came over TLS, and plain ASGI answers."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import quote, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 3986 path characters that need no escaping; everything else (CR, LF, spaces, a
# backslash, non-ASCII) is percent-encoded, so nothing a visitor sends can end a header
PATH_SAFE = "/:@!$&'()*+,;=-._~"


def same_origin_location(scope: Scope, query: list[tuple[str, str]]) -> str:
    """A path on this site for ``Location``, never another site's address: leading slashes
    and backslashes collapse to one slash, so ``//evil.example/x`` (or ``/\\evil.example``,
    or ``%2F%2Fevil.example``, which arrives decoded) stays on this origin as
    ``/evil.example/x``."""
    path = "/" + str(scope.get("path", "/")).lstrip("/\\")
    root = "/" + str(scope.get("root_path", "")).strip("/\\") if scope.get("root_path") else ""
    rest = urlencode(query)
    return quote(root + path, safe=PATH_SAFE) + (f"?{rest}" if rest else "")


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def came_over_tls(scope: Scope, trusted_proxies: tuple[Network, ...]) -> bool:
    """True when the visitor's own connection was TLS: the server says so, or a proxy we
    trust (and only such a proxy) says so in ``X-Forwarded-Proto``."""
    if scope.get("scheme") == "https":
        return True
    client = scope.get("client")
    if not client or not trusted_proxies:
        return False
    try:
        peer = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if not any(peer in net for net in trusted_proxies):
        return False
    proto = header(scope, b"x-forwarded-proto") or ""
    return proto.split(",")[0].strip().lower() == "https"


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def cookie_header(name: str, value: str, *, max_age: int, secure: bool) -> tuple[bytes, bytes]:
    attrs = f"{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    return b"set-cookie", (attrs + ("; Secure" if secure else "")).encode()


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
