"""What a long-running gateway keeps out of the garbage collector's full scans: the
claims of every token it verified or signed (up to 100,000 cached), and what start-up
made. Tracked, they made each full collection under joins a pause of 60-170 ms that every
request waited out (measured with gc.callbacks in a gateway taking ES256 joins)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import httpx

from shared.keyring import KeyRing, ensure_keys
from shared.tokens import TokenService
from tests.helpers.servers import GatewayServer


async def test_cached_token_claims_add_nothing_for_the_collector_to_scan(tmp_path: Path) -> None:
    ensure_keys(tmp_path, ("rsa", "ec"))
    service = TokenService(KeyRing(tmp_path), issuer="i", audience="site", queue_alg="ES256")
    try:
        tokens = [
            await service.sign_queue(
                "sale", f"p-{i}", incarnation="x", arrival=i, size=1, priority=0, bind=""
            )
            for i in range(2000)
        ]
        access = [
            await service.sign_access(
                "sale", f"p-{i}", iat=int(time.time()), exp=int(time.time()) + 60
            )
            for i in range(200)
        ]
        gc.collect()
        before = len(gc.get_objects())
        for token in tokens:  # verified from the cache the signing filled
            assert service.verify_queue(token, "sale").room == "sale"
        for token in access:
            assert service.verify_access(token, "sale").room == "sale"
        gc.collect()
        assert len(gc.get_objects()) - before < 100  # 2,000 tracked claims before
        assert not gc.is_tracked(service.verify_queue(tokens[0], "sale"))
    finally:
        service.close()


async def test_a_started_gateway_has_frozen_its_start_up_heap(
    gateway: GatewayServer, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert gc.get_freeze_count() > 0
