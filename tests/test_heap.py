"""What a long-running gateway keeps out of the garbage collector's full scans: the
claims of every token it verified or signed (up to 100,000 cached), and what start-up
made. Tracked, they made each full collection under joins a pause of 60-170 ms that every
request waited out (measured with gc.callbacks in a gateway taking ES256 joins)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

import httpx

from shared.keyring import KeyRing, ensure_keys
from shared.tokens import TokenService
from tests.helpers.servers import GatewayServer


async def _queue_tokens(service: TokenService, count: int) -> list[str]:
    """``count`` queue tokens of room "sale", each for another place."""
    return [
        await service.sign_queue(
            "sale", f"p-{i}", incarnation="x", arrival=i, size=1, priority=0, bind=""
        )
        for i in range(count)
    ]


async def test_cached_token_claims_add_nothing_for_the_collector_to_scan(tmp_path: Path) -> None:
    ensure_keys(tmp_path, ("rsa", "ec"))
    service = TokenService(KeyRing(tmp_path), issuer="i", audience="site", queue_alg="ES256")
    try:
        tokens = await _queue_tokens(service, 2000)
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


async def test_cached_verifications_keep_no_token_text(tmp_path: Path) -> None:
    """A gateway verifying 2,000 tokens it did not sign (as every gateway but the one a
    person joined on does) keeps a small digest of each, not the token: its cache holds
    up to 100,000, and a gateway's queue tokens are about 700 characters. Here, with
    tokens of about 390, each token cached kept 870 bytes before and keeps 470 now."""
    ensure_keys(tmp_path, ("rsa", "ec"))
    signer = TokenService(KeyRing(tmp_path), issuer="i", audience="site", queue_alg="ES256")
    other = TokenService(KeyRing(tmp_path), issuer="i", audience="site", queue_alg="ES256")
    try:
        tokens = await _queue_tokens(signer, 2000)
        assert len(tokens[0]) > 300
        other.verify_queue(tokens[0].encode().decode(), "sale")  # (first-use costs out)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for token in tokens[1:]:  # a fresh string each, as a request brings it
                assert other.verify_queue(token.encode().decode(), "sale").room == "sale"
            gc.collect()
            kept = (tracemalloc.get_traced_memory()[0] - before) / 1999
        finally:
            tracemalloc.stop()
        assert kept < len(tokens[0]) + 200, kept  # (the token's text alone is more)
        for token in tokens[:50]:  # still answered from the cache, each its own claims
            claims = other.verify_queue(token.encode().decode(), "sale")
            assert claims is other.verify_queue(token, "sale")
        assert len({other.verify_queue(t, "sale").sub for t in tokens}) == 2000
    finally:
        signer.close()
        other.close()


async def test_a_started_gateway_has_frozen_its_start_up_heap(
    gateway: GatewayServer, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert gc.get_freeze_count() > 0
