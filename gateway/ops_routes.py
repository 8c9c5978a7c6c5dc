"""Health, readiness, metrics and the public keys."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Response, get
from litestar.datastructures import State
from litestar.params import FromQuery

from gateway.schemas import Ready
from gateway.services import services_from_state
from shared.errors import RoomNotFound, StoreUnavailable


@get("/healthz", summary="The process is alive", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Data store and NATS reachable, outboxes within bound (503 otherwise)")
async def readyz(
    state: State, nats: FromQuery[Literal["required", "optional"]] = "required"
) -> Response[Ready]:
    """503 unless the data store answers, NATS is connected and no room's outbox holds more
    than WAITROOM_OUTBOX_MAX undelivered events. ``?nats=optional`` leaves NATS out: the
    gateway serves without it (events wait in the outboxes), so a load balancer probe
    should not pull every pod when NATS is away."""
    svc = services_from_state(state)
    store_ok = await svc.store.ping()
    nats_ok = svc.nats.connected
    backlog = 0
    if store_ok:
        try:
            backlog = await svc.store.largest_outbox()
        except StoreUnavailable:
            store_ok = False
    outbox_ok = backlog <= svc.settings.outbox_max
    ready = store_ok and outbox_ok and (nats_ok or nats == "optional")
    return Response(
        Ready(ready=ready, store=store_ok, nats=nats_ok, outbox_ok=outbox_ok, backlog=backlog),
        status_code=200 if ready else 503,
        headers={} if ready else {"Retry-After": "5"},
    )


@get("/metrics", summary="Prometheus text", media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> Response[bytes]:
    svc = services_from_state(state)
    svc.metrics.nats_up.set(1 if svc.nats.connected else 0)
    try:
        for room in await svc.store.rooms():
            try:
                svc.metrics.set_room(room, await svc.store.figures(room))
            except RoomNotFound:
                continue
        svc.metrics.store_up.set(1)
    except StoreUnavailable:
        svc.metrics.store_up.set(0)
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")


@get("/.well-known/jwks.json", summary="Public keys for offline verification of access tokens")
async def jwks(state: State) -> Response[dict[str, Any]]:
    svc = services_from_state(state)
    return Response(svc.tokens.ring.jwks(), headers={"Cache-Control": "public, max-age=300"})


OPS_ROUTES = [healthz, readyz, metrics, jwks]
