"""Health, readiness, metrics and the public keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from gateway.caller import optional_bearer
from gateway.errors import error_answers
from gateway.operations import Operations
from gateway.routes.common import BEARER
from gateway.schemas import ErrorBody, Ready
from shared import errors

NatsMode = Annotated[
    Literal["required", "optional"],
    QueryParameter(
        name="nats",
        description="`optional` leaves NATS out: what load balancers and k8s probes use.",
    ),
]


@get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Data store and NATS reachable, outboxes within bound (503 otherwise)",
    responses={
        **error_answers(errors.InvalidBody),
        503: ResponseSpec(data_container=Ready, description="Not ready (see the fields)."),
    },
)
async def readyz(
    operations: NamedDependency[Operations], nats: NatsMode = "required"
) -> Response[Ready]:
    """503 unless the data store answers, NATS is connected and no room's outbox holds more
    than WAITROOM_OUTBOX_MAX undelivered events. ``?nats=optional`` leaves NATS out: the
    gateway serves without it (events wait in the outboxes), so a load balancer probe
    should not pull every pod when NATS is away."""
    ready = await operations.readiness(nats_required=nats == "required")
    return Response(
        ready,
        status_code=200 if ready.ready else 503,
        headers={} if ready.ready else {"Retry-After": "5"},
    )


@get(
    "/metrics",
    summary="Prometheus text (Bearer WAITROOM_METRICS_TOKEN; else 404)",
    media_type="text/plain; version=0.0.4",
    security=BEARER,
    responses={
        404: ResponseSpec(
            data_container=ErrorBody,
            description=f"`{errors.NotFoundRoute.code}`: no bearer token, not the one "
            "WAITROOM_METRICS_TOKEN names, or none configured (WAITROOM_METRICS_PORT "
            "serves /metrics without one).",
        )
    },
)
async def metrics(
    request: Request[Any, Any, Any], operations: NamedDependency[Operations]
) -> Response[bytes]:
    """Not public: only the bearer of WAITROOM_METRICS_TOKEN is answered here; anyone
    else gets the 404 of a path that does not exist."""
    if not operations.may_read_metrics(optional_bearer(request)):
        raise errors.NotFoundRoute()
    return Response(await operations.metrics_text(), media_type="text/plain; version=0.0.4")


@get("/.well-known/jwks.json", summary="Public keys for offline verification of access tokens")
async def jwks(operations: NamedDependency[Operations]) -> Response[dict[str, Any]]:
    return Response(operations.jwks(), headers={"Cache-Control": "public, max-age=300"})


ops_router = Router(path="/", route_handlers=[healthz, readyz, metrics, jwks], tags=["operations"])
