"""What both worker processes share: clients opened and closed in one place, signal
handling, and the relay loop that publishes outboxes to JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog

from shared import event_loop
from shared.heap import freeze_startup_heap
from shared.logs import configure
from shared.metric_names import Exporter
from shared.metrics_server import metrics_port
from shared.nats_link import NatsLink
from shared.redis_conn import connect
from shared.relay import OutboxRelay, SnapshotPolicy
from shared.room_loop import RoomLoop
from shared.settings import Part, Settings, help_page
from shared.store import RoomStore
from shared.store.lane import ScriptLane
from shared.store.rooms import WORKER_LANE_SCRIPTS
from shared.tasks import cancel_and_wait
from shared.worker_metrics import WorkerMetrics

log = structlog.get_logger("worker")

GRACE_SECONDS = 10.0


@dataclass
class WorkerContext:
    settings: Settings
    store: RoomStore
    nats: NatsLink
    metrics: WorkerMetrics

    async def metrics_text(self) -> bytes:
        return self.metrics.render(nats_connected=self.nats.connected)


EXPORTERS: dict[str, Exporter] = {
    "admission": "admission_worker",
    "heartbeat": "heartbeat_worker",
}


@contextlib.asynccontextmanager
async def worker_context(settings: Settings, name: str) -> AsyncIterator[WorkerContext]:
    redis = connect(settings.redis_url, tls_ca=settings.redis_tls_ca, max_connections=32)
    link = NatsLink.from_settings(settings, name)
    link.start()
    lane = ScriptLane.for_url(settings.redis_url, tls_ca=settings.redis_tls_ca)
    try:
        store = RoomStore(
            redis, outbox_max=settings.outbox_max, lane=lane, lane_scripts=WORKER_LANE_SCRIPTS
        )
        metrics = WorkerMetrics(EXPORTERS[name], settings.outbox_max)
        yield WorkerContext(settings, store, link, metrics)
    finally:
        await link.close()
        if lane is not None:
            await lane.aclose()
        await redis.aclose()


def relay_loop(ctx: WorkerContext, holder: str) -> RoomLoop:
    settings = ctx.settings
    relay = OutboxRelay(
        ctx.store,
        ctx.nats,
        holder=holder,
        lease_ms=settings.lease_ms,
        outbox_max=settings.outbox_max,
        outbox_age_alert=settings.outbox_age_alert,
        snapshots=SnapshotPolicy(settings.snapshot_events, float(settings.snapshot_seconds)),
        metrics=ctx.metrics,
    )

    async def work(room: str, fence: int) -> None:
        delivered = await relay.drain(room, fence)
        # a deleted room whose outbox is empty now has nothing left to deliver
        if delivered == 0 and room in loop.draining:
            await ctx.store.finish_draining(room)

    loop = RoomLoop(
        ctx.store,
        role="relay",
        holder=holder,
        tick_ms=max(20, ctx.settings.admission_tick_ms // 2),
        lease_ms=ctx.settings.lease_ms,
        work=work,
        include_draining=True,
        finish=relay.drain_all,
        metrics=ctx.metrics,
    )
    return loop


async def run_loops(
    loops: list[RoomLoop], stop: asyncio.Event, *, grace: float = GRACE_SECONDS
) -> None:
    """Run loops until ``stop``, then give them ``grace`` seconds to finish; cancel after,
    and return once they have ended (the caller closes the clients they use)."""
    tasks = [asyncio.create_task(loop.run(stop), name=f"loop-{loop.role}") for loop in loops]
    await stop.wait()
    done, pending = await asyncio.wait(tasks, timeout=grace)
    await asyncio.gather(*(cancel_and_wait(task) for task in pending))  # all at once
    for task in done:
        if task.exception() is not None:
            log.error("loop_failed", error=repr(task.exception()))


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        log.info("signal_received", signal=sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handle, sig)


WorkerRun = Callable[[WorkerContext, asyncio.Event], Awaitable[None]]


def worker_main(name: str, part: Part, run: WorkerRun, doc: str, argv: list[str]) -> None:
    """The ``main`` of a worker process: settings from the environment, logs, run."""
    if "--help" in argv or "-h" in argv:
        sys.stdout.write(help_page(doc, part))
        return
    settings = Settings.from_env_or_exit(os.environ, f"python -m {name}_worker")
    configure(json=settings.log_json, level=settings.log_level)

    async def amain() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        async with (
            worker_context(settings, name) as ctx,
            metrics_port(ctx.metrics_text, settings.host, settings.metrics_port),
        ):
            freeze_startup_heap()
            log.info("worker_started", role=name, instance=settings.instance)
            await run(ctx, stop)
        log.info("worker_stopped", role=name)

    event_loop.run(amain())
