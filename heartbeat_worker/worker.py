"""The heartbeat worker: per room, under its lease, expires the silent.

People waiting whose last heartbeat is older than heartbeat_timeout, admissions not claimed
within claim_window, sessions past their deadline; their units come back at once. Also
forgets people who ended longer ago than the retention.
"""

from __future__ import annotations

import asyncio

import structlog

from shared.metric_registry import counter
from shared.room_loop import RoomLoop
from shared.worker_process import WorkerContext, relay_loop, run_loops

log = structlog.get_logger("heartbeat")

EXPIRY_REASON = {
    "silent": "heartbeat_timeout",
    "unclaimed": "claim_timeout",
    "sessions": "session_timeout",
}
"""The reason label (shared.metric_names.EXPIRY_REASONS) of each expiry job's count."""


def expiry_loop(ctx: WorkerContext, holder: str) -> RoomLoop:
    settings = ctx.settings
    # an ended place is remembered for longer than any of its queue tokens lives (they
    # are not re-signed once it ended), so no token can bring it back after the purge
    retention = max(settings.ended_retention, 2 * settings.queue_token_ttl) * 1000
    expiries = counter(ctx.metrics.registry, "heartbeat_worker", "waitroom_expiries")

    async def work(room: str, fence: int) -> None:
        counts = await ctx.store.expire(
            room, holder, fence, settings.lease_ms, retention_ms=retention
        )
        for job, reason in EXPIRY_REASON.items():
            if counts[job]:
                expiries.labels(room, reason).inc(counts[job])
        if any(counts.values()):
            log.info("expired", room=room, **counts)

    return RoomLoop(
        ctx.store,
        role="heartbeat",
        holder=holder,
        tick_ms=settings.heartbeat_tick_ms,
        lease_ms=settings.lease_ms,
        work=work,
        metrics=ctx.metrics,
    )


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    holder = f"heartbeat-{ctx.settings.instance}"
    loops = [expiry_loop(ctx, holder)]
    if ctx.settings.relay_enabled:
        loops.append(relay_loop(ctx, holder))
    await run_loops(loops, stop)
