"""A crowd for the fault tests: people joining, heartbeating, claiming and completing."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from gateway.serving import KEEP_ALIVE_SECONDS
from tests.helpers.api import bearer


def crowd_client(base_url: str) -> httpx.AsyncClient:
    """A client for a crowd. It closes a kept-alive connection idle for a while before the
    gateway does (``KEEP_ALIVE_SECONDS``): a request sent on a connection in the moment
    the server closes it fails with ``ReadError``, which a browser retries and a test of
    faults would count as one."""
    limits = httpx.Limits(keepalive_expiry=KEEP_ALIVE_SECONDS / 2)
    return httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits)


class Load:
    """People joining, heartbeating, claiming and completing, until stopped."""

    def __init__(self, client: httpx.AsyncClient, rooms: list[str]) -> None:
        self.client = client
        self.rooms = rooms
        self.people: list[tuple[str, dict[str, Any]]] = []
        self.stop = asyncio.Event()
        self.errors: list[str] = []
        self.access: dict[str, str] = {}
        """position_id -> the access token that person was handed."""

    async def person(self, room: str, rng: random.Random) -> None:
        r = await self.client.post(f"/v1/rooms/{room}/enqueue")
        # 200: a join the balancer sent again (same Idempotency-Key) after its first
        # gateway took it and then died; the answer is the place the first one made
        if r.status_code not in (200, 201):
            self.errors.append(r.text)
            return
        me = r.json()
        self.people.append((room, me))
        auth = bearer(me["token"])
        while not self.stop.is_set():
            r = await self.client.post(f"/v1/rooms/{room}/heartbeat", headers=auth)
            body = r.json()
            if body.get("state") == "admitted":
                self.access[me["position_id"]] = body["access_token"]
                choice = rng.random()
                if choice < 0.4:
                    await self.client.get(body["redirect_url"])
                elif choice < 0.8:
                    await self.client.post(
                        "/v1/session/complete", headers=bearer(body["access_token"])
                    )
                return
            if body.get("state") != "waiting":
                return
            if rng.random() < 0.02:
                await self.client.post(f"/v1/rooms/{room}/leave", headers=auth)
                return
            await asyncio.sleep(0.2 + rng.random() * 0.2)

    async def run(self, people: int, spacing: float = 0.005) -> None:
        rng = random.Random(11)
        tasks = []
        for i in range(people):
            tasks.append(asyncio.create_task(self.person(self.rooms[i % len(self.rooms)], rng)))
            await asyncio.sleep(spacing)
        await asyncio.gather(*tasks)
