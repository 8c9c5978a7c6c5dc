"""``GET /v1/rooms/{room}/events?token=``: a person's live updates as Server-Sent Events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from gateway.client import bearer
from gateway.live import LiveHub, Watcher
from gateway.queue_routes import base_url, current_or_restored, queue_claims, room_or_404
from gateway.services import services_from_state

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 3000


def hub_from_state(state: State) -> LiveHub:
    hub: LiveHub = state.live
    return hub


@get("/v1/rooms/{room:str}/events", summary="Live updates (Server-Sent Events)")
async def events(
    room: FromPath[str], request: Request[Any, Any, Any], state: State
) -> ServerSentEvent:
    """Events: ``position`` (position, ahead, total, eta_seconds, eta_range), ``admitted``
    (redirect_url, access_token, claim_deadline), ``expired`` (reason), ``room`` (status:
    active, paused, maintenance), ``token`` (a re-signed queue token to keep), ``state``
    (left or completed). The stream opens with the person's current state, so a client
    that reconnects, to this pod or another, misses nothing; ids are the room's event
    sequence, and a ``Last-Event-ID`` equal to the current one skips the unchanged opening
    state. An open stream counts as a heartbeat. The token is the queue token
    (``?token=``, since EventSource cannot send headers; ``Authorization`` works too)."""
    svc = services_from_state(state)
    hub = hub_from_state(state)
    room_or_404(room)
    token = bearer(request, query_name="token")
    claims = queue_claims(request, svc, room, token)
    await svc.limiter.check("status", room, claims.sub)  # a reconnect loop is bounded too
    view = await current_or_restored(svc, room, claims, touch=True)
    watcher = Watcher(room=room, claims=claims, token=token, base_url=base_url(request, svc))
    last_id = request.headers.get("last-event-id", "")
    await hub.send_state(watcher, view)
    if last_id == str(view.event_seq):
        while not watcher.queue.empty():  # the client has this state already
            watcher.queue.get_nowait()
    await hub.watch(watcher)
    svc.metrics.sse_open.inc()

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        try:
            yield ServerSentEventMessage(data=None, comment="waitroom", retry=RETRY_MS)
            while True:
                try:
                    event, data = await asyncio.wait_for(
                        watcher.queue.get(), timeout=KEEPALIVE_SECONDS
                    )
                except TimeoutError:
                    yield ServerSentEventMessage(data=None, comment="keepalive")
                    continue
                yield ServerSentEventMessage(
                    data=msgspec.json.encode(data).decode(), event=event, id=str(watcher.event_seq)
                )
        finally:
            svc.metrics.sse_open.dec()
            await hub.unwatch(watcher)

    return ServerSentEvent(
        stream(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
