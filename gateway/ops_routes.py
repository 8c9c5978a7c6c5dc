"""Health, readiness, metrics and the public keys."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from gateway.schemas import Ready
from gateway.services import services_from_state
from shared.errors import RoomNotFound, StoreUnavailable


@get("/healthz", summary="The process is alive", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Data store and NATS reachable (503 otherwise)")
async def readyz(state: State) -> Response[Ready]:
    svc = services_from_state(state)
    store_ok = await svc.store.ping()
    nats_ok = svc.nats.connected
    ready = store_ok and nats_ok
    return Response(
        Ready(ready=ready, store=store_ok, nats=nats_ok),
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
