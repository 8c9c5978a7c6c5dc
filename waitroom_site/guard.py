"""``WaitroomGuard``: ASGI middleware that lets in only the people the waiting room admitted.

- A visitor arriving with ``?waitroom_token=<access token>`` (the waiting room sends them
  so) has the token checked offline against the gateway's JWKS: it must be an access
  token of *this* room (its ``aud`` names the room), unexpired, signed by a published key.
  It is moved into an HttpOnly session cookie and the visitor is sent to the same path on
  this site without it, so the token leaves the URL. A token from a URL is taken once:
  a leaked link does not let a second browser in.
- A visitor with a good session cookie goes through; the claims are in
  ``scope["waitroom"]`` (a ``VisitClaims``: ``seconds_left()`` says how long the visit
  has before its session ends, so the site can warn "your time ends in 2 minutes"). The
  visit is kept alive with a session heartbeat to the gateway every ``heartbeat_every``
  seconds, sent in the background: no request waits on the gateway, and while it is away
  the offline check stands. Each heartbeat's answer refreshes the session's end.
- Anyone else is sent to the waiting room (HTML requests) or answered 401 (others).

The guard also times the site: every request it lets through, from its arrival to the
app starting its answer. Given the deployment's ``site_key`` (WAITROOM_SITE_KEY, the one
the gateways have), at most every ``report_every`` seconds the next heartbeat carries a
summary of those times (count, p50, p95, max), signed with that key (see
shared/site_latency.py), so a room with ``auto_release`` can pace admissions by how the
site copes. The gateway keeps no report it cannot check, so a visitor, who holds an
access token but not the key, cannot steer the pace. Without a key the guard reports
nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt

from shared.site_latency import REPORT_MAC_HEADER, report_mac
from shared.tokens import access_audience
from waitroom_site.bounded import ExpiringMap
from waitroom_site.http import (
    Receive,
    Scope,
    Send,
    came_over_tls,
    cookie_header,
    header,
    parse_networks,
    respond,
    same_origin_location,
)
from waitroom_site.keys import KeySet
from waitroom_site.latency import LatencySamples, LatencySummary

TOKEN_PARAM = "waitroom_token"  # noqa: S105 (a query parameter name)
ENDED_STATES = (401, 403, 409)


@dataclass(frozen=True)
class VisitClaims:
    sub: str
    room: str
    exp: int
    token: str
    session_deadline: float = 0.0
    """Epoch seconds when the visit's session ends unless a heartbeat moves it: from the
    gateway's last heartbeat answer, or the access token's expiry before the first."""

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds until the visit's session ends (0 once it has)."""
        end = self.session_deadline or float(self.exp)
        return max(0.0, end - (time.time() if now is None else now))


class WaitroomGuard:
    def __init__(
        self,
        app: Any,
        *,
        gateway_url: str,
        room: str,
        jwks_url: str | None = None,
        issuer: str = "waitroom",
        audience: str = "waitroom-protected-site",
        cookie_name: str = "waitroom_session",
        heartbeat_every: float = 30.0,
        report_every: float = 5.0,
        exempt_paths: tuple[str, ...] = (),
        timeout: float = 3.0,
        secure_cookies: bool | None = None,
        trusted_proxies: tuple[str, ...] = (),
        max_visits: int = 100_000,
        site_key: str = "",
    ) -> None:
        """``secure_cookies``: True marks the session cookie ``Secure`` always, False never,
        None (default) when the visitor came over TLS — as the server saw it, or as
        ``X-Forwarded-Proto`` says when the peer is one of ``trusted_proxies`` (CIDRs of a
        TLS-terminating proxy in front). ``max_visits`` bounds the guard's memory.
        ``report_every``: seconds between two reports of the site's response times, each
        signed with ``site_key`` (WAITROOM_SITE_KEY; empty: no reports are sent)."""
        self.app = app
        self.gateway_url = gateway_url.rstrip("/")
        self.room = room
        self.issuer = issuer
        self.audience = access_audience(audience, room)
        self.cookie_name = cookie_name
        self.heartbeat_every = heartbeat_every
        self.report_every = report_every
        self.site_key = site_key
        self.latency = LatencySamples()
        self._reported_at = float("-inf")
        self.exempt_paths = exempt_paths
        self.secure_cookies = secure_cookies
        self.trusted_proxies = parse_networks(trusted_proxies)
        self.client = httpx.AsyncClient(timeout=timeout)
        self.keys = KeySet(jwks_url or f"{self.gateway_url}/.well-known/jwks.json", self.client)
        self._beaten: ExpiringMap[float] = ExpiringMap(max_visits)  # sub -> last beat
        self._ended: ExpiringMap[bool] = ExpiringMap(max_visits)  # sub -> visit over
        self._renewed: ExpiringMap[str] = ExpiringMap(max_visits)  # sub -> fresher token
        self._used: ExpiringMap[str] = ExpiringMap(max_visits)  # jti from a URL -> token
        self._deadlines: ExpiringMap[float] = ExpiringMap(max_visits)  # sub -> session end
        self._beats: set[asyncio.Task[None]] = set()

    def visits_held(self) -> int:
        """The most visits any of the guard's per-visit records holds (at most
        ``max_visits``)."""
        return max(
            len(self._beaten),
            len(self._ended),
            len(self._renewed),
            len(self._used),
            len(self._deadlines),
        )

    @property
    def room_url(self) -> str:
        return f"{self.gateway_url}/rooms/{self.room}"

    async def verify(self, token: str) -> VisitClaims | None:
        """The visit this access token allows here, checked offline; None if it allows none
        (another room's, a queue token, expired, forged, or a visit known to be over)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        key = await self.keys.key(kid) if isinstance(kid, str) else None
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != "access" or claims.get("room") != self.room:
            return None
        if claims["sub"] in self._ended:
            return None
        return VisitClaims(
            sub=claims["sub"],
            room=claims["room"],
            exp=claims["exp"],
            token=token,
            session_deadline=self._deadlines.get(claims["sub"]) or float(claims["exp"]),
        )

    async def complete(self, scope: Scope) -> bool:
        """The visit of this request is over: free its slot in the waiting room now."""
        visit: VisitClaims | None = scope.get("waitroom")
        if visit is None:
            return False
        self._ended.put(visit.sub, True, until=visit.exp)
        try:
            r = await self.client.post(
                f"{self.gateway_url}/v1/session/complete",
                headers={"Authorization": f"Bearer {visit.token}"},
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        query = parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"), True)
        from_url = next((v for k, v in query if k == TOKEN_PARAM), None)
        if from_url is not None:
            await self._arrive(
                scope, send, from_url, [(k, v) for k, v in query if k != TOKEN_PARAM]
            )
            return
        token = _cookie_value(scope, self.cookie_name)
        visit = await self.verify(token) if token else None
        if visit is None:
            await self._turn_away(scope, send, clear=token is not None)
            return
        self._keep_alive(visit)
        extra: list[tuple[bytes, bytes]] = []
        renewed = self._renewed.pop(visit.sub)
        if renewed is not None and (fresh := await self.verify(renewed)) is not None:
            visit = fresh
            extra.append(self._cookie(scope, renewed, fresh.exp))
        scope["waitroom"] = visit
        arrived = time.perf_counter()

        async def send_with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.latency.add(time.perf_counter() - arrived)
                if extra:
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _arrive(
        self, scope: Scope, send: Send, token: str, rest: list[tuple[str, str]]
    ) -> None:
        """A visitor sent by the waiting room: the token moves into the cookie, once."""
        visit = await self.verify(token)
        jti = _jti(token)
        if visit is None or jti is None:
            await self._turn_away(scope, send)
            return
        location = same_origin_location(scope, rest)
        if self._used.get(jti) is not None:
            # a link used before: fine for the browser that holds its cookie (a reload),
            # refused for anyone else (a leaked or shared link)
            if _cookie_value(scope, self.cookie_name) == token:
                await respond(send, 303, [(b"location", location.encode())], b"")
            else:
                await self._turn_away(scope, send)
            return
        self._used.put(jti, token, until=visit.exp)
        headers = [(b"location", location.encode()), self._cookie(scope, token, visit.exp)]
        await respond(send, 303, headers, b"")

    def _cookie(self, scope: Scope, token: str, exp: int) -> tuple[bytes, bytes]:
        secure = self.secure_cookies
        if secure is None:
            secure = came_over_tls(scope, self.trusted_proxies)
        max_age = max(0, exp - int(time.time())) if token else 0
        return cookie_header(self.cookie_name, token, max_age=max_age, secure=secure)

    def _keep_alive(self, visit: VisitClaims) -> None:
        """Start a session heartbeat in the background when one is due: the visit's own,
        or the next report of the site's latency (which any live visit may carry)."""
        now = time.monotonic()
        last = self._beaten.get(visit.sub)
        report_due = (
            bool(self.site_key)
            and len(self.latency) > 0
            and now - self._reported_at >= self.report_every
        )
        if last is not None and now - last < self.heartbeat_every and not report_due:
            return
        self._beaten.put(visit.sub, now, until=visit.exp)
        report = None
        if report_due:
            self._reported_at = now
            report = self.latency.take()
        task = asyncio.create_task(self._heartbeat(visit, report), name="waitroom-heartbeat")
        self._beats.add(task)
        task.add_done_callback(self._beats.discard)

    async def _heartbeat(self, visit: VisitClaims, report: LatencySummary | None = None) -> None:
        headers = {"Authorization": f"Bearer {visit.token}"}
        body = b""
        if report is not None:
            body = json.dumps({"latency": report}).encode()
            headers["Content-Type"] = "application/json"
            headers[REPORT_MAC_HEADER] = report_mac(self.site_key, visit.room, visit.sub, body)
        try:
            r = await self.client.post(
                f"{self.gateway_url}/v1/session/heartbeat", headers=headers, content=body
            )
        except httpx.HTTPError:
            return  # the gateway is away: the offline check stands
        if r.status_code in ENDED_STATES:
            self._ended.put(visit.sub, True, until=visit.exp)
        elif r.status_code == 200:
            body = r.json()
            deadline = body.get("session_deadline")
            if isinstance(deadline, int | float):
                self._deadlines.put(visit.sub, float(deadline), until=float(deadline) + 60)
            if not body.get("active"):
                self._ended.put(visit.sub, True, until=visit.exp)
            elif isinstance(token := body.get("access_token"), str) and token != visit.token:
                self._renewed.put(visit.sub, token, until=time.time() + self.heartbeat_every * 4)

    async def _turn_away(self, scope: Scope, send: Send, *, clear: bool = False) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if clear:
            headers.append(self._cookie(scope, "", 0))
        accept = header(scope, b"accept") or ""
        if scope.get("method") == "GET" and "text/html" in accept:
            headers.append((b"location", self.room_url.encode()))
            await respond(send, 303, headers, b"")
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
        await respond(send, 401, headers, body)

    async def aclose(self) -> None:
        for task in list(self._beats):
            task.cancel()
        await asyncio.gather(*self._beats, return_exceptions=True)
        await self.keys.aclose()
        await self.client.aclose()


def _jti(token: str) -> str | None:
    try:
        jti = jwt.decode(token, options={"verify_signature": False}).get("jti")
    except jwt.PyJWTError:
        return None
    return jti if isinstance(jti, str) else None


def _cookie_value(scope: Scope, name: str) -> str | None:
    raw = header(scope, b"cookie")
    if raw is None:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    return jar[name].value if name in jar and jar[name].value else None
