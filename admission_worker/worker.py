"""The admission worker: per room, under its lease, lets the head of the line in, at the
room's release rate or, for a room that follows its site (``auto_release``), at the pace
the site's latency allows (admission_worker/pace.py). It also ends the visits the
protected site reports over NATS (admission_worker/site_bus.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from admission_worker.pace import PaceController
from admission_worker.site_bus import SiteBus
from shared.keyring import KeyRing
from shared.metric_registry import counter
from shared.room_loop import RoomLoop
from shared.settings import Settings
from shared.tokens import TokenService
from shared.worker_process import WorkerContext, relay_loop, run_loops

log = structlog.get_logger("admission")


def admission_loop(ctx: WorkerContext, holder: str) -> RoomLoop:
    settings = ctx.settings
    pacer = PaceController(ctx.store)
    admitted = counter(ctx.metrics.registry, "admission_worker", "waitroom_admissions")

    async def work(room: str, fence: int) -> None:
        pace = await pacer.pace(room, holder, fence, settings.lease_ms)
        result = await ctx.store.admit(room, holder, fence, settings.lease_ms, pace=pace)
        if result.position_ids:
            admitted.labels(room).inc(len(result.position_ids))
            log.info(
                "admitted", room=room, count=len(result.position_ids), used_units=result.used_units
            )

    return RoomLoop(
        ctx.store,
        role="admission",
        holder=holder,
        tick_ms=settings.admission_tick_ms,
        lease_ms=settings.lease_ms,
        work=work,
        metrics=ctx.metrics,
    )


@contextlib.asynccontextmanager
async def token_checker(settings: Settings) -> AsyncIterator[TokenService]:
    """The gateways' keys, to check the access tokens the site sends (never to sign)."""
    ring = KeyRing(settings.keys_dir)
    if not any(key.kind == "rsa" for key in ring.loaded()):
        log.warning("no_access_keys", keys_dir=str(settings.keys_dir))
    tokens = TokenService(ring, issuer=settings.issuer, audience=settings.audience)
    try:
        yield tokens
    finally:
        tokens.close()


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    holder = f"admission-{ctx.settings.instance}"
    async with token_checker(ctx.settings) as tokens:
        bus = SiteBus(ctx.store, tokens, ctx.nats, ctx.metrics.registry)
        loops = [admission_loop(ctx, holder)]
        if ctx.settings.relay_enabled:
            loops.append(relay_loop(ctx, holder))
        listening = asyncio.create_task(bus.run(stop), name="site-bus")
        await run_loops(loops, stop)
        await listening
