"""For the protected site: let in only the people the waiting room admitted.

``WaitroomGuard`` is ASGI middleware (Litestar, Starlette/FastAPI, any ASGI app)::

    app = WaitroomGuard(app, gateway_url="https://wait.example.com", room="sale")

- A visitor arriving with ``?waitroom_token=<access token>`` (the waiting room sends them
  so) has the token checked offline against the gateway's JWKS (fetched once, cached,
  fetched again for a key it does not know), gets it in a session cookie, and is sent to
  the same address without the token, so it leaves the URL (and browser history).
- A visitor with a good session cookie goes through; the claims are in
  ``scope["waitroom"]``. While they browse, the visit is kept alive with a session
  heartbeat to the gateway every ``heartbeat_every`` seconds, which also renews the cookie.
- Anyone else is sent to the waiting room (HTML requests) or answered 401 (others).

When the visit is over (an order placed, a table booked), one line frees the slot::

    await guard.complete(scope)      # or request.scope
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import jwt

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

__all__ = ["VisitClaims", "WaitroomGuard"]


@dataclass(frozen=True)
class VisitClaims:
    sub: str
    room: str
    exp: int
    token: str


class _Jwks:
    """The gateway's public keys by kid, fetched lazily and cached."""

    def __init__(self, url: str, client: httpx.AsyncClient, ttl: float = 300.0) -> None:
        self.url = url
        self.client = client
        self.ttl = ttl
        self.keys: dict[str, Any] = {}
        self.fetched = 0.0

    async def key(self, kid: str) -> Any | None:
        stale = time.monotonic() - self.fetched > self.ttl
        unknown = kid not in self.keys and time.monotonic() - self.fetched > 5.0
        if stale or unknown:
            try:
                r = await self.client.get(self.url)
                r.raise_for_status()
                jwks = jwt.PyJWKSet.from_dict(r.json())
                self.keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
                self.fetched = time.monotonic()
            except (httpx.HTTPError, jwt.PyJWTError, ValueError):
                pass  # keep the keys we have; a gateway blip must not lock visitors out
        return self.keys.get(kid)


class WaitroomGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        gateway_url: str,
        room: str,
        jwks_url: str | None = None,
        issuer: str = "waitroom",
        audience: str = "waitroom-protected-site",
        cookie_name: str = "waitroom_session",
        heartbeat_every: float = 30.0,
        exempt_paths: tuple[str, ...] = (),
        timeout: float = 3.0,
    ) -> None:
        self.app = app
        self.gateway_url = gateway_url.rstrip("/")
        self.room = room
        self.issuer = issuer
        self.audience = audience
        self.cookie_name = cookie_name
        self.heartbeat_every = heartbeat_every
        self.exempt_paths = exempt_paths
        self.client = httpx.AsyncClient(timeout=timeout)
        self.jwks = _Jwks(jwks_url or f"{self.gateway_url}/.well-known/jwks.json", self.client)
        self._beats: dict[str, float] = {}
        self._ended: set[str] = set()

    @property
    def room_url(self) -> str:
        return f"{self.gateway_url}/rooms/{self.room}"

    async def verify(self, token: str) -> VisitClaims | None:
        """The visit this access token allows, checked offline; None if it allows none."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        key = await self.jwks.key(kid) if isinstance(kid, str) else None
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != "access" or claims.get("room") != self.room:
            return None
        if claims["sub"] in self._ended:
            return None
        return VisitClaims(sub=claims["sub"], room=claims["room"], exp=claims["exp"], token=token)

    async def complete(self, scope: Scope) -> bool:
        """The visit of this request is over: free its slot in the waiting room now."""
        visit: VisitClaims | None = scope.get("waitroom")
        if visit is None:
            return False
        self._ended.add(visit.sub)
        try:
            r = await self.client.post(
                f"{self.gateway_url}/v1/session/complete",
                headers={"Authorization": f"Bearer {visit.token}"},
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def _heartbeat(self, visit: VisitClaims) -> tuple[bool, str | None]:
        """Keep the visit alive; (still allowed, renewed token)."""
        now = time.monotonic()
        if now - self._beats.get(visit.sub, 0.0) < self.heartbeat_every:
            return True, None
        self._beats[visit.sub] = now
        try:
            r = await self.client.post(
                f"{self.gateway_url}/v1/session/heartbeat",
                headers={"Authorization": f"Bearer {visit.token}"},
            )
        except httpx.HTTPError:
            return True, None  # the gateway is away: the offline check stands
        if r.status_code == 200:
            body = r.json()
            return bool(body.get("active")), body.get("access_token")
        if r.status_code in (401, 403, 409):
            return False, None
        return True, None

    def _cookie(self, token: str, scope: Scope, max_age: int) -> tuple[bytes, bytes]:
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        value = (
            f"{self.cookie_name}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        )
        return b"set-cookie", value.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
        from_url = next((v for k, v in query if k == "waitroom_token"), None)
        if from_url is not None:
            visit = await self.verify(from_url)
            if visit is None:
                await self._turn_away(scope, send)
                return
            rest = urlencode([(k, v) for k, v in query if k != "waitroom_token"])
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            max_age = max(1, visit.exp - int(time.time()))
            await _respond(
                send,
                303,
                [(b"location", location.encode()), self._cookie(from_url, scope, max_age)],
                b"",
            )
            return
        token = _cookie_value(scope, self.cookie_name)
        visit = await self.verify(token) if token else None
        if visit is None:
            await self._turn_away(scope, send, clear=token is not None)
            return
        allowed, renewed = await self._heartbeat(visit)
        if not allowed:
            self._ended.add(visit.sub)
            await self._turn_away(scope, send, clear=True)
            return
        extra: list[tuple[bytes, bytes]] = []
        if renewed:
            fresh = await self.verify(renewed)
            if fresh is not None:
                visit = fresh
                extra.append(self._cookie(renewed, scope, max(1, fresh.exp - int(time.time()))))
        scope["waitroom"] = visit

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _turn_away(self, scope: Scope, send: Send, *, clear: bool = False) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if clear:
            headers.append(self._cookie("", scope, 0))
        accept = dict(scope.get("headers", [])).get(b"accept", b"").decode()
        if scope.get("method") == "GET" and "text/html" in accept:
            headers.append((b"location", self.room_url.encode()))
            await _respond(send, 303, headers, b"")
            return
        body = json.dumps(
            {
                "error": {
                    "code": "not_admitted",
                    "message": "Join the waiting room first.",
                    "waiting_room": self.room_url,
                }
            }
        ).encode()
        headers.append((b"content-type", b"application/json"))
        await _respond(send, 401, headers, body)

    async def aclose(self) -> None:
        await self.client.aclose()


def _cookie_value(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if name in jar and jar[name].value:
                return jar[name].value
    return None


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
