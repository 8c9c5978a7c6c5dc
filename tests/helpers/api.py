"""Calls the tests make through the public API, written once: the admin key, rooms,
a person's place, a room's figures."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

ADMIN_KEY = "test-admin-key-" + "x" * 16
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
METRICS_TOKEN = "test-metrics-token-" + "m" * 16
METRICS = {"Authorization": f"Bearer {METRICS_TOKEN}"}
"""What /metrics on a gateway's main port asks for (the tests' WAITROOM_METRICS_TOKEN)."""
SITE_KEY = "test-site-key-" + "s" * 16
"""The key the tests' gateways and guards share (WAITROOM_SITE_KEY)."""

RoomFactory = Callable[..., Awaitable[str]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fresh_room_id(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


async def create_room(client: httpx.AsyncClient, room: str, **config: Any) -> None:
    """Create a room through the admin API (no per-address limit unless given)."""
    body = {"target_url": "http://127.0.0.1:9/target", "max_positions_per_ip": 0, **config}
    r = await client.put(f"/v1/admin/rooms/{room}", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text


async def place(client: httpx.AsyncClient, room: str, token: str) -> dict[str, Any]:
    """Where the holder of this queue token stands (GET status, which must answer 200)."""
    r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def in_state(client: httpx.AsyncClient, room: str, token: str, state: str) -> bool:
    return bool((await place(client, room, token))["state"] == state)


async def figures(client: httpx.AsyncClient, room: str) -> dict[str, Any]:
    """A room's live figures, as the admin API shows them."""
    r = await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()["figures"]
    return found


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the documented JSON error with this status and code."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def assert_retry_after(r: httpx.Response) -> int:
    """A positive Retry-After header that agrees with the body's ``retry_after``."""
    retry = int(r.headers["Retry-After"])
    assert retry >= 1
    assert r.json()["error"]["retry_after"] == retry
    return retry
