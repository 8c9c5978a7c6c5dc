"""The protected site's guard against the people who attack it: open redirects and planted
sessions, other rooms' and other kinds of tokens, replayed links, plain-HTTP cookies behind
a TLS proxy, floods of made-up key ids, a gateway that hangs, and memory that grows."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.keyring import KeyRing
from shared.settings import Settings
from shared.tokens import TokenService, access_audience
from tests.helpers.api import METRICS
from tests.helpers.servers import AppServer, GatewayServer
from waitroom.processes import free_port
from waitroom_site import WaitroomGuard

ROOM = "shop"


async def site(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The protected app: says whose visit it served."""
    visit = scope.get("waitroom")
    body = f"ok {visit.sub if visit else '-'}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def access_token(settings: Settings, room: str = ROOM, *, ttl: int = 600) -> str:
    """An access token as the gateway signs them (same keys, same claims)."""
    service = TokenService(
        KeyRing(settings.keys_dir), issuer=settings.issuer, audience=settings.audience
    )
    try:
        now = int(time.time())
        # a subject of its own: a visit the gateway does not know is ended by its first
        # heartbeat, and a later token with the same subject would open nothing
        sub = f"p-{secrets.token_hex(8)}"
        return await service.sign_access(room, sub, iat=now, exp=now + ttl)
    finally:
        service.close()


async def queue_token(settings: Settings, room: str = ROOM) -> str:
    service = TokenService(
        KeyRing(settings.keys_dir), issuer=settings.issuer, audience=settings.audience
    )
    try:
        return await service.sign_queue(
            room, "p-q", incarnation="i", arrival=1, size=1, priority=0, bind=""
        )
    finally:
        service.close()


class Site:
    def __init__(self, guard: WaitroomGuard, server: AppServer) -> None:
        self.guard = guard
        self.url = server.url


async def served(guard: WaitroomGuard) -> AsyncIterator[Site]:
    async with AppServer(guard, lifespan="off") as server:
        try:
            yield Site(guard, server)
        finally:
            await guard.aclose()


@pytest.fixture
async def shop(gateway: GatewayServer) -> AsyncIterator[Site]:
    guard = WaitroomGuard(site, gateway_url=gateway.url, room=ROOM, heartbeat_every=3600)
    async for s in served(guard):
        yield s


def browser(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=10, headers={"Accept": "text/html"})


def session_cookie(r: httpx.Response) -> str | None:
    for value in r.headers.get_list("set-cookie"):
        if value.startswith("waitroom_session="):
            return value
    return None


def raw_get(url: str, raw_path: str) -> httpx.Request:
    """A request whose path goes out exactly as written (no client normalising)."""
    request = httpx.Request("GET", url, headers={"Accept": "text/html"})
    request.url = request.url.copy_with(raw_path=raw_path.encode())
    return request


@pytest.mark.parametrize(
    "raw_path",
    [
        "//evil.example/x",
        "///evil.example/x",
        "/\\evil.example/x",
        "/%5Cevil.example/x",
        "/%2F%2Fevil.example/x",
        "/%2F/evil.example/x",
        "/x%0D%0ASet-Cookie:%20planted=1",
    ],
)
async def test_the_token_link_never_redirects_off_the_site(
    shop: Site, settings: Settings, raw_path: str
) -> None:
    token = await access_token(settings)
    async with browser(shop.url) as c:
        r = await c.send(raw_get(shop.url, f"{raw_path}?waitroom_token={token}&keep=1"))
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    parts = urlsplit(location)
    assert not parts.scheme
    assert not parts.netloc, location  # no //host: the browser stays on this origin
    assert location.startswith("/")
    assert not location.startswith(("//", "/\\"))
    assert "\r" not in location
    assert "\n" not in location
    assert parts.query == "keep=1"  # the token left the URL, the rest stayed
    assert len(r.headers.get_list("set-cookie")) == 1


async def test_other_rooms_queue_tokens_and_expired_tokens_get_no_session(
    shop: Site, settings: Settings
) -> None:
    refused = {
        "another room's access": await access_token(settings, room="other"),
        "a queue token": await queue_token(settings),
        "an expired access": await access_token(settings, ttl=-5),
        "garbage": "not.a.token",
    }
    async with browser(shop.url) as c:
        for what, token in refused.items():
            r = await c.get(f"/checkout?waitroom_token={token}")
            assert r.status_code == 303, what
            assert r.headers["location"].endswith(f"/rooms/{ROOM}"), what  # to the line
            assert session_cookie(r) is None, what
            api = await c.get("/checkout", headers={"Accept": "application/json"})
            assert api.status_code == 401, what
        good = await access_token(settings)
        r = await c.get(f"/checkout?waitroom_token={good}")
        assert r.status_code == 303
        assert session_cookie(r) is not None
        r = await c.get("/checkout")
        assert r.status_code == 200
        assert r.text.startswith("ok p-")


async def test_a_token_link_is_taken_once(shop: Site, settings: Settings) -> None:
    token = await access_token(settings)
    link = f"/checkout?waitroom_token={token}"
    async with browser(shop.url) as first, browser(shop.url) as second:
        r = await first.get(link)
        assert r.status_code == 303
        assert session_cookie(r) is not None
        assert (await first.get(link)).status_code == 303  # a reload in the same browser
        assert (await first.get("/checkout")).status_code == 200
        # the same link in another browser (leaked, shared, from history): refused
        r = await second.get(link)
        assert r.headers["location"].endswith(f"/rooms/{ROOM}")
        assert session_cookie(r) is None
        assert (await second.get("/checkout")).status_code == 303


@pytest.mark.parametrize(
    ("secure_cookies", "trusted", "forwarded", "secure"),
    [
        (None, (), "https", False),  # anyone can send the header: not believed
        (None, ("127.0.0.1/32",), "https", True),  # our TLS proxy says so
        (None, ("10.0.0.0/8",), "https", False),  # a proxy, but not the one in front
        (None, ("127.0.0.1/32",), "http", False),
        (True, (), None, True),
        (False, ("127.0.0.1/32",), "https", False),
    ],
)
async def test_secure_cookies_behind_a_tls_terminating_proxy(
    gateway: GatewayServer,
    settings: Settings,
    secure_cookies: bool | None,
    trusted: tuple[str, ...],
    forwarded: str | None,
    secure: bool,
) -> None:
    guard = WaitroomGuard(
        site,
        gateway_url=gateway.url,
        room=ROOM,
        secure_cookies=secure_cookies,
        trusted_proxies=trusted,
    )
    async for shop in served(guard):
        headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
        async with browser(shop.url) as c:
            token = await access_token(settings)
            r = await c.get(f"/?waitroom_token={token}", headers=headers)
        cookie = session_cookie(r)
        assert cookie is not None
        assert ("; Secure" in cookie) is secure, cookie
        assert "HttpOnly" in cookie


async def test_made_up_key_ids_do_not_flood_the_gateway_with_jwks_fetches(
    shop: Site, gateway: GatewayServer, settings: Settings
) -> None:
    outsider = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    forged = [
        jwt.encode(
            {
                "iss": settings.issuer,
                "aud": access_audience(settings.audience, ROOM),
                "sub": f"x{i}",
                "room": ROOM,
                "typ": "access",
                "iat": now,
                "exp": now + 600,
                "jti": f"j{i}",
            },
            outsider,
            algorithm="RS256",
            headers={"kid": f"rsa-0000000000-nope{i}"},
        )
        for i in range(200)
    ]
    async with browser(shop.url) as c:
        good = await access_token(settings)
        assert (await c.get(f"/?waitroom_token={good}")).status_code == 303
        assert shop.guard.keys.fetches == 1
        before = await jwks_requests(gateway)
        for path in ("/", "/again"):  # 200 at once, then 200 more
            answers = await asyncio.gather(*(c.get(f"{path}?waitroom_token={t}") for t in forged))
            assert all(a.headers["location"].endswith(f"/rooms/{ROOM}") for a in answers)
            assert all(session_cookie(a) is None for a in answers)
        assert shop.guard.keys.fetches <= 2  # at most one more, however many asked
        assert await jwks_requests(gateway) - before <= 1


async def jwks_requests(gateway: GatewayServer) -> int:
    """JWKS requests the gateway answered, from its own metrics."""
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"{gateway.url}/metrics", headers=METRICS)
    total = 0
    for line in r.text.splitlines():
        if line.startswith("waitroom_http_requests_total") and "jwks.json" in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def test_requests_do_not_wait_on_a_gateway_that_hangs(
    gateway: GatewayServer, settings: Settings
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept and never answer: a gateway that hangs

    port = free_port()
    hole = await asyncio.start_server(hold, "127.0.0.1", port)
    guard = WaitroomGuard(
        site,
        gateway_url=f"http://127.0.0.1:{port}",
        jwks_url=f"{gateway.url}/.well-known/jwks.json",
        room=ROOM,
        heartbeat_every=0,
        timeout=30,
    )
    try:
        async for shop in served(guard):
            async with browser(shop.url) as c:
                token = await access_token(settings)
                assert (await c.get(f"/?waitroom_token={token}")).status_code == 303
                for _ in range(3):
                    r = await c.get("/page")
                    assert r.status_code == 200, r.text
                # answered while the heartbeats it started still hang on the gateway
                assert held
                assert all(not w.is_closing() for w in held)
    finally:
        hole.close()
        for w in held:
            w.close()


async def test_the_guard_memory_is_bounded(gateway: GatewayServer, settings: Settings) -> None:
    guard = WaitroomGuard(
        site, gateway_url=gateway.url, room=ROOM, heartbeat_every=3600, max_visits=5
    )
    async for shop in served(guard):
        for _ in range(20):
            async with browser(shop.url) as c:
                token = await access_token(settings)
                assert (await c.get(f"/?waitroom_token={token}")).status_code == 303
                assert (await c.get("/")).status_code == 200
        assert guard.visits_held() <= 5
