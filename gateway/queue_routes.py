"""The API of people waiting: join, where am I, still here, leave, claim."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from gateway.bodies import read_body
from gateway.client import bearer, client_ip
from gateway.places import go_url, new_queue_token, place_response
from gateway.schemas import EnqueueBody, LeaveResponse, PlaceResponse
from gateway.services import Services, services_from_state
from shared import keys
from shared.errors import InvalidBody, PositionNotFound, RoomNotFound, WaitroomError
from shared.store import PersonView
from shared.tokens import QueueClaims, client_binding

MAX_METADATA_BYTES = 2048
LIVE_STATES = ("waiting", "admitted", "active")

AnyRequest = Request[Any, Any, Any]


def room_or_404(room: str) -> str:
    if not keys.ROOM_ID_PATTERN.match(room):
        raise RoomNotFound()
    return room


def base_url(request: AnyRequest, svc: Services) -> str:
    return svc.settings.public_url or str(request.base_url).rstrip("/")


def binding_of(request: AnyRequest, svc: Services) -> str | None:
    if not svc.settings.token_binding:
        return None
    return client_binding(client_ip(request, svc.settings), request.headers.get("user-agent", ""))


def queue_claims(request: AnyRequest, svc: Services, room: str, token: str) -> QueueClaims:
    return svc.tokens.verify_queue(token, room, binding_of(request, svc))


async def current_or_restored(
    svc: Services, room: str, claims: QueueClaims, touch: bool
) -> PersonView:
    """The person's place; if the data store lost it, put it back where the token says."""
    try:
        return await svc.store.status(room, claims.sub, touch=touch)
    except PositionNotFound:
        return await svc.store.enqueue(
            room,
            position_id=claims.sub,
            size=claims.size,
            priority=claims.priority,
            bind=claims.bind,
            restore_arrival=claims.arrival,
        )


@post("/v1/rooms/{room:str}/enqueue", status_code=201, summary="Join the line")
async def enqueue(
    room: FromPath[str], request: AnyRequest, state: State
) -> Response[PlaceResponse]:
    """Join the line. Body (optional): ``{"size": 1, "metadata": {}}``; a party of N uses N
    units. A valid queue token for this room in ``Authorization: Bearer`` returns the
    existing place (200) instead of a new one (201) while that place is live (waiting,
    admitted or active; an ended place gets a new one), and so does a repeated
    ``Idempotency-Key`` header (a client's own random 8-128 characters), which makes a
    retry safe."""
    svc = services_from_state(state)
    room_or_404(room)
    ip = client_ip(request, svc.settings)
    base = base_url(request, svc)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        try:
            claims = queue_claims(request, svc, room, header[7:].strip())
        except WaitroomError:
            claims = None  # not a place of this room: join afresh
        if claims is not None:
            view = await current_or_restored(svc, room, claims, touch=True)
            if view.state in LIVE_STATES:
                token = header[7:].strip()
                if svc.tokens.needs_refresh(claims):
                    token = await new_queue_token(svc, room, view)
                out = await place_response(
                    svc, room, view, base_url=base, go_token=token, queue_token=token
                )
                return Response(out, status_code=200)
            # that place has ended: a new one
    await svc.limiter.check("enqueue", ip)
    body = await read_body(request, EnqueueBody, optional=True) or EnqueueBody()
    metadata = msgspec.json.encode(body.metadata).decode() if body.metadata else ""
    if len(metadata) > MAX_METADATA_BYTES:
        raise InvalidBody(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    binding = binding_of(request, svc)
    view = await svc.store.enqueue(
        room,
        position_id=position_id_for_retry(request, svc, room),
        size=body.size,
        ip_hash=svc.ip_hash(ip) if ip else "",
        metadata=metadata,
        bind=binding or "",
    )
    token = await new_queue_token(svc, room, view)
    out = await place_response(svc, room, view, base_url=base, go_token=token, queue_token=token)
    return Response(out, status_code=201 if view.created else 200)


def position_id_for_retry(request: AnyRequest, svc: Services, room: str) -> str | None:
    """With an ``Idempotency-Key``, a retry (say, after a gateway died mid-request) lands
    on the same place: the place id is derived from the key."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 8 <= len(key) <= 128:
        raise InvalidBody("Idempotency-Key must be 8 to 128 characters.")
    return svc.position_id_for(room, key)


@get("/v1/rooms/{room:str}/status", summary="Where am I")
async def status(room: FromPath[str], request: AnyRequest, state: State) -> PlaceResponse:
    """Where the bearer of this queue token stands. Once admitted, also an
    ``access_token``, the ``redirect_url`` that claims it and its ``claim_deadline``."""
    svc = services_from_state(state)
    room_or_404(room)
    token = bearer(request)
    claims = queue_claims(request, svc, room, token)
    await svc.limiter.check("status", room, claims.sub)
    view = await current_or_restored(svc, room, claims, touch=False)
    return await place_response(svc, room, view, base_url=base_url(request, svc), go_token=token)


@post("/v1/rooms/{room:str}/heartbeat", status_code=200, summary="I am still here")
async def heartbeat(room: FromPath[str], request: AnyRequest, state: State) -> PlaceResponse:
    """Keep a place alive; answers like status, plus ``token`` (re-signed when less than
    half of its life is left, else the same)."""
    svc = services_from_state(state)
    room_or_404(room)
    token = bearer(request)
    claims = queue_claims(request, svc, room, token)
    await svc.limiter.check("heartbeat", room, claims.sub)
    view = await current_or_restored(svc, room, claims, touch=True)
    if svc.tokens.needs_refresh(claims):
        token = await new_queue_token(svc, room, view)
    return await place_response(
        svc, room, view, base_url=base_url(request, svc), go_token=token, queue_token=token
    )


@post("/v1/rooms/{room:str}/leave", status_code=200, summary="Give up my place")
async def leave(room: FromPath[str], request: AnyRequest, state: State) -> LeaveResponse:
    """Leave the line (or give back an admission or a session). Answers the final state."""
    svc = services_from_state(state)
    room_or_404(room)
    claims = queue_claims(request, svc, room, bearer(request))
    view = await svc.store.leave(room, claims.sub)
    return LeaveResponse(position_id=view.position_id, state=view.state)


QUEUE_ROUTES = [enqueue, status, heartbeat, leave]
__all__ = ["QUEUE_ROUTES", "go_url"]
