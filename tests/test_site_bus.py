"""Visits the protected site ends over NATS (``waitroom-site.<room>.completed`` /
``.failed``): the admission workers free their units, believe nothing a token does not
prove, and share the subjects in a queue group."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import nats
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.aio.client import Client as NatsClient

from admission_worker.site_bus import SiteBus, subject
from admission_worker.worker import admission_loop, token_checker
from shared.settings import Settings
from shared.worker_process import worker_context
from tests.helpers.api import ADMIN, bearer, create_room, figures, fresh_room_id
from tests.helpers.servers import ModuleProc, settings_env
from tests.helpers.wait import wait_until


async def admitted_access_tokens(
    client: httpx.AsyncClient, room: str, people: int
) -> list[dict[str, Any]]:
    """Join ``people`` places and wait until each is admitted: their status answers, with
    their queue tokens."""
    joined = [(await client.post(f"/v1/rooms/{room}/enqueue")).json() for _ in range(people)]

    async def all_admitted() -> list[dict[str, Any]] | None:
        answers = [
            (await client.get(f"/v1/rooms/{room}/status", headers=bearer(p["token"]))).json()
            for p in joined
        ]
        if not all(a["state"] == "admitted" for a in answers):
            return None
        return [{**a, "token": p["token"]} for a, p in zip(answers, joined, strict=True)]

    found: list[dict[str, Any]] = await wait_until(all_admitted, seconds=15)
    return found


async def used_units(client: httpx.AsyncClient, room: str) -> int:
    return int((await figures(client, room))["used_units"])


def forged_token(room: str, sub: str, kid: str) -> str:
    """An access token that looks right in every claim but is signed by a key of its own."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    now = int(time.time())
    claims = {
        "iss": "waitroom",
        "aud": f"waitroom-protected-site:{room}",
        "sub": sub,
        "room": room,
        "typ": "access",
        "iat": now,
        "exp": now + 600,
        "jti": "x",
    }
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})


class Listening:
    """The admission worker's own parts, run here so the test can read the bus's counts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()

    async def __aenter__(self) -> SiteBus:
        self._ctx = worker_context(self.settings, "admission")
        ctx = await self._ctx.__aenter__()
        self._tokens = token_checker(self.settings)
        self.bus = SiteBus(ctx.store, await self._tokens.__aenter__(), ctx.nats)
        loop = admission_loop(ctx, f"admission-{self.settings.instance}")
        self.tasks = [
            asyncio.create_task(self.bus.run(self.stop)),
            asyncio.create_task(loop.run(self.stop)),
        ]
        await asyncio.wait_for(self.bus.listening.wait(), timeout=10)
        return self.bus

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await self._tokens.__aexit__(None, None, None)
        await self._ctx.__aexit__(None, None, None)


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[NatsClient]:
    nc = await nats.connect(settings.nats_url)
    yield nc
    await nc.drain()


async def test_completion_over_nats_frees_units_and_a_forged_token_frees_nothing(
    settings: Settings,
    client: httpx.AsyncClient,
    publisher: NatsClient,
) -> None:
    room, other = fresh_room_id("bus"), fresh_room_id("bus")
    await create_room(client, room, max_active=4, release_rate=100)
    await create_room(client, other, max_active=4, release_rate=100)
    async with Listening(settings) as bus:
        people = await admitted_access_tokens(client, room, 4)
        strangers = await admitted_access_tokens(client, other, 1)
        assert await used_units(client, room) == 4
        # nobody else goes in meanwhile: the units freed below stay free
        await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"status": "paused"})
        known_kid = jwt.get_unverified_header(people[0]["access_token"])["kid"]

        async def rejected(n: int) -> bool:
            return bus.counted("rejected") >= n

        bad: list[bytes] = [
            # forged: every claim right, signed by another key under a known kid
            json.dumps({"token": forged_token(room, people[0]["position_id"], known_kid)}).encode(),
            # another room's access token, sent on this room's subject
            json.dumps({"token": strangers[0]["access_token"]}).encode(),
            # a queue token is no access token
            json.dumps(
                {"token": (await client.post(f"/v1/rooms/{room}/enqueue")).json()["token"]}
            ).encode(),
            b"not json",
            b'{"tok": "missing"}',
        ]
        for data in bad:
            await publisher.publish(subject(room, "completed"), data)
        await publisher.flush()
        await wait_until(lambda: rejected(len(bad)), seconds=10)
        assert await used_units(client, room) == 4  # nothing was freed
        assert await used_units(client, other) == 1
        assert bus.counted("ended") == 0

        # the site reports two visits over, one completed and one failed: 2 units back
        for person, kind in ((people[0], "completed"), (people[1], "failed")):
            await publisher.publish(
                subject(room, kind), json.dumps({"token": person["access_token"]}).encode()
            )
        await publisher.flush()

        async def two_freed() -> bool:
            return await used_units(client, room) == 2

        await wait_until(two_freed, seconds=10)
        await wait_until(lambda: _counted(bus, "ended", 2), seconds=5)
        for person in people[:2]:
            status = await client.get(f"/v1/rooms/{room}/status", headers=bearer(person["token"]))
            assert status.json()["state"] == "completed"
        # the same message again (a retry by the site) changes nothing more
        await publisher.publish(
            subject(room, "completed"), json.dumps({"token": people[0]["access_token"]}).encode()
        )
        await publisher.flush()
        await wait_until(lambda: _counted(bus, "ended", 3), seconds=5)
        assert await used_units(client, room) == 2
        fig = await figures(client, room)
        assert fig["completed_total"] == 2


async def _counted(bus: SiteBus, outcome: str, n: int) -> bool:
    return bus.counted(outcome) >= n


async def test_an_expired_access_token_frees_nothing(
    settings: Settings, client: httpx.AsyncClient, publisher: NatsClient
) -> None:
    room = fresh_room_id("bus")
    await create_room(client, room, max_active=2, release_rate=100)
    async with Listening(settings) as bus:
        person = (await admitted_access_tokens(client, room, 1))[0]
        claims = jwt.decode(person["access_token"], options={"verify_signature": False})
        stale = await bus.tokens.sign_access(
            room, claims["sub"], iat=claims["iat"] - 600, exp=int(time.time()) - 5
        )
        await publisher.publish(subject(room, "completed"), json.dumps({"token": stale}).encode())
        await publisher.flush()
        await wait_until(lambda: _counted(bus, "rejected", 1), seconds=10)
        assert await used_units(client, room) == 1


@pytest.mark.slow
async def test_two_worker_processes_share_the_subjects_each_message_handled_once(
    settings: Settings,
    client: httpx.AsyncClient,
    publisher: NatsClient,
    tmp_path: Path,
) -> None:
    room = fresh_room_id("bus")
    await create_room(client, room, max_active=8, release_rate=100)
    logs = [tmp_path / f"admission-{i}.log" for i in range(2)]
    workers = [
        ModuleProc(
            "admission_worker", settings_env(settings, WAITROOM_INSTANCE=f"bus{i}"), log
        ).start()
        for i, log in enumerate(logs)
    ]
    try:

        async def both_listening() -> bool:
            return all(path.exists() and "site_bus_listening" in path.read_text() for path in logs)

        await wait_until(both_listening, seconds=20)
        people = await admitted_access_tokens(client, room, 8)
        for person in people:
            await publisher.publish(
                subject(room, "completed"), json.dumps({"token": person["access_token"]}).encode()
            )
        await publisher.flush()

        async def all_free() -> bool:
            return await used_units(client, room) == 0

        await wait_until(all_free, seconds=15)
    finally:
        for w in workers:
            w.stop()
    handled = [
        line
        for path in logs
        for line in (
            json.loads(raw) for raw in path.read_text().splitlines() if raw.startswith("{")
        )
        if line.get("event") == "site_message"
    ]
    assert len(handled) == 8  # once each, not once per worker
    assert {h["outcome"] for h in handled} == {"ended"}
