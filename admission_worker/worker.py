"""The admission worker: per room, under its lease, lets the head of the line in."""

from __future__ import annotations

import asyncio

import structlog

from shared.metric_registry import counter
from shared.room_loop import RoomLoop
from shared.worker_process import WorkerContext, relay_loop, run_loops

log = structlog.get_logger("admission")


def admission_loop(ctx: WorkerContext, holder: str) -> RoomLoop:
    settings = ctx.settings
    admitted = counter(ctx.metrics.registry, "admission_worker", "waitroom_admissions")

    async def work(room: str, fence: int) -> None:
        result = await ctx.store.admit(room, holder, fence, settings.lease_ms)
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


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    holder = f"admission-{ctx.settings.instance}"
    loops = [admission_loop(ctx, holder)]
    if ctx.settings.relay_enabled:
        loops.append(relay_loop(ctx, holder))
    await run_loops(loops, stop)
