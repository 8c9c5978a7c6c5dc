"""A data store and NATS that ask for credentials and speak TLS: the settings say how to
reach them (credentials in the URLs, CA files for TLS), and every part gets through —
and without them, nothing does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from tests.helpers.api import ADMIN, create_room, place
from tests.helpers.servers import (
    GatewayServer,
    NatsProc,
    ValkeyProc,
    in_process_workers,
    room_events,
)
from tests.helpers.tls import Certificates, TlsProxy, make_certificates
from tests.helpers.wait import wait_until
from waitroom.processes import free_port

pytestmark = pytest.mark.slow

PASSWORD = "store-secret-0123456789"
TOKEN = "nats-token-0123456789"


@dataclass
class GuardedValkey(ValkeyProc):
    def command(self) -> list[str]:
        return [*super().command(), "--requirepass", PASSWORD]


@dataclass
class GuardedNats(NatsProc):
    certs: Certificates | None = None

    def command(self) -> list[str]:
        extra = ["--auth", TOKEN]
        if self.certs is not None:
            extra += ["--tls", "--tlscert", str(self.certs.cert), "--tlskey", str(self.certs.key)]
        return [*super().command(), *extra]


@dataclass
class Guarded:
    valkey: ValkeyProc
    nats: NatsProc
    certs: Certificates


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Guarded]:
    certs = make_certificates(tmp_path / "certs")
    valkey = GuardedValkey("valkey", free_port(), tmp_path / "valkey")
    nats = GuardedNats("nats", free_port(), tmp_path / "nats", certs=certs)
    for proc in (valkey, nats):
        proc.data_dir.mkdir()
        proc.start()
    yield Guarded(valkey, nats, certs)
    for proc in (nats, valkey):
        proc.stop()


@pytest.fixture
async def store_over_tls(guarded: Guarded) -> AsyncIterator[int]:
    """The guarded Valkey behind TLS (a sidecar, as a managed Redis would offer it)."""
    port = free_port()
    async with TlsProxy(guarded.certs, port, guarded.valkey.port):
        yield port


async def test_every_part_gets_through_with_credentials_and_tls(
    settings: Settings, guarded: Guarded, store_over_tls: int
) -> None:
    reaching = settings.with_changes(
        redis_url=f"rediss://:{PASSWORD}@127.0.0.1:{store_over_tls}/0",
        redis_tls_ca=guarded.certs.ca,
        nats_url=f"tls://{TOKEN}@127.0.0.1:{guarded.nats.port}",
        nats_tls_ca=guarded.certs.ca,
    )
    async with GatewayServer(reaching) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text  # store and NATS both reached
        room = "tls-" + settings.instance
        await create_room(c, room, release_rate=100)
        me = (await c.post(f"/v1/rooms/{room}/enqueue")).json()
        async with in_process_workers(reaching):  # the workers and their relay, too

            async def admitted() -> bool:
                return bool((await place(c, room, me["token"]))["state"] == "admitted")

            await wait_until(admitted)

            async def on_the_stream() -> bool:
                events = await room_events(
                    reaching.nats_url, room, settle=0.3, tls_ca=guarded.certs.ca
                )
                return len(events) >= 3  # room_updated, enqueued, admitted

            await wait_until(on_the_stream, seconds=15)


@pytest.mark.parametrize("missing", ["store password", "nats token", "nats CA"])
async def test_without_the_credentials_nothing_gets_through(
    settings: Settings, guarded: Guarded, store_over_tls: int, missing: str
) -> None:
    store = f"rediss://:{PASSWORD}@127.0.0.1:{store_over_tls}/0"
    if missing == "store password":
        store = f"rediss://127.0.0.1:{store_over_tls}/0"
    nats_url = f"tls://{TOKEN}@127.0.0.1:{guarded.nats.port}"
    if missing == "nats token":
        nats_url = f"tls://127.0.0.1:{guarded.nats.port}"
    lacking = settings.with_changes(
        redis_url=store,
        redis_tls_ca=guarded.certs.ca,
        nats_url=nats_url,
        nats_tls_ca=None if missing == "nats CA" else guarded.certs.ca,
    )
    async with GatewayServer(lacking) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        await asyncio.sleep(1.0)  # NATS connects in the background: give it the chance
        ready = (await c.get("/readyz")).json()
        if missing == "store password":
            assert ready["store"] is False
            r = await c.get("/v1/admin/rooms", headers=ADMIN)
            assert r.status_code == 503
        else:
            assert ready["store"] is True
            assert ready["nats"] is False
