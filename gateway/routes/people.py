"""``/v1/rooms/{room}``: the API of people waiting."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, QueryParameter

from gateway.errors import (
    BODY_ERRORS,
    QUEUE_TOKEN_ERRORS,
    ROOM_ERRORS,
    STORE_ERRORS,
    error_answers,
)
from gateway.live import EventStream
from gateway.people import IDEMPOTENCY_KEY
from gateway.routes.common import BEARER, ROOM_CALL, RoomCall
from gateway.routes.openapi import OptionalBody
from gateway.schemas import (
    NO_ENQUEUE_FIELDS,
    NO_FIELDS,
    ChallengeOut,
    EnqueueBody,
    LeaveResponse,
    NoFields,
    PlaceResponse,
)
from gateway.services import services_of
from shared import errors

IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        description="A client's own random 8-128 visible ASCII characters (a UUID, say): "
        "a retry with the same key lands on the same place.",
        # checked by People.join; empty is the same as leaving it out
        schema_extra={"pattern": f"^({IDEMPOTENCY_KEY.pattern[1:-1]})?$"},
    ),
]
TokenQuery = Annotated[
    str,
    QueryParameter(name="token", description="The queue token (EventSource sends no headers)."),
]
LastEventId = Annotated[
    str, HeaderParameter(name="Last-Event-ID", description="The id of the last event seen.")
]


@post(
    "/enqueue",
    operation_class=OptionalBody,
    status_code=201,
    summary="Join the line",
    responses={
        200: ResponseSpec(PlaceResponse, description="The live place the bearer already holds."),
        **error_answers(
            *BODY_ERRORS,
            *ROOM_ERRORS,
            *STORE_ERRORS,
            errors.PartyTooLarge,
            errors.UnknownLane,
            errors.InviteInvalid,
            errors.InviteExpired,
            errors.InviteUsedUp,
            errors.InviteRevoked,
            errors.RoomClosed,
            errors.RoomFull,
            errors.PowRequired,
            errors.PowInvalid,
            errors.PowReused,
            errors.QueueFull,
            errors.TooManyPositions,
            errors.RoomMaintenance,
            errors.EventsBacklog,
        ),
    },
)
async def enqueue(
    call: NamedDependency[RoomCall],
    data: JSONBody[EnqueueBody] = NO_ENQUEUE_FIELDS,
    idempotency_key: IdempotencyKey = "",
) -> Response[PlaceResponse]:
    """Join the line. Body (optional): ``{"size": 1, "metadata": {}, "lane": "any",
    "invite": "..."}``; a party of N uses N units. Before the room's ``opens_at`` the place
    is in the pre-queue (``opens_at`` in the answer); from ``closes_at`` on joining is
    refused (409 ``room_closed``); a full ``reject`` room turns people away (409
    ``room_full``), a ``passthrough`` or ``reject`` room with room to spare admits at once.
    A valid queue token for this room in ``Authorization: Bearer`` returns the existing
    place (200) instead of a new one (201) while that place is live (waiting, admitted or
    active; an ended place gets a new one), and so does a repeated ``Idempotency-Key``,
    which makes a retry safe."""
    joined = await call.people.join(
        call.room,
        call.caller,
        data,
        bearer=call.bearer,
        idempotency_key=idempotency_key or None,
    )
    return Response(joined.answer, status_code=201 if joined.created else 200)


@get(
    "/challenge",
    summary="A proof-of-work challenge to solve before joining",
    responses=error_answers(*ROOM_ERRORS, *STORE_ERRORS),
)
async def challenge(call: NamedDependency[RoomCall]) -> ChallengeOut:
    """For rooms with ``pow_difficulty`` set: a challenge bound to this client (address and
    User-Agent), this room and the next two minutes. The waiting-room page solves it in a
    Web Worker; a script can too (``gateway.proof_of_work.solve``)."""
    c = await call.people.challenge(call.room, call.caller)
    return ChallengeOut(challenge=c.challenge, difficulty=c.difficulty, expires_at=c.expires_at)


@get(
    "/status",
    summary="Where am I",
    security=BEARER,
    responses=error_answers(*QUEUE_TOKEN_ERRORS, *ROOM_ERRORS, *STORE_ERRORS),
)
async def status(call: NamedDependency[RoomCall]) -> PlaceResponse:
    """Where the bearer of this queue token stands. Once admitted, also an
    ``access_token``, the ``redirect_url`` that claims it and its ``claim_deadline``."""
    return await call.people.status(call.room, call.caller, call.token())


@post(
    "/heartbeat",
    operation_class=OptionalBody,
    status_code=200,
    summary="I am still here",
    security=BEARER,
    responses=error_answers(*BODY_ERRORS, *QUEUE_TOKEN_ERRORS, *ROOM_ERRORS, *STORE_ERRORS),
)
async def heartbeat(
    call: NamedDependency[RoomCall], data: JSONBody[NoFields] = NO_FIELDS
) -> PlaceResponse:
    """Keep a place alive; answers like status, plus ``token`` (re-signed when less than
    half of its life is left, else the same)."""
    return await call.people.heartbeat(call.room, call.caller, call.token())


@post(
    "/leave",
    operation_class=OptionalBody,
    status_code=200,
    summary="Give up my place",
    security=BEARER,
    responses=error_answers(
        *BODY_ERRORS, *QUEUE_TOKEN_ERRORS, *ROOM_ERRORS, *STORE_ERRORS, errors.PositionNotFound
    ),
)
async def leave(
    call: NamedDependency[RoomCall], data: JSONBody[NoFields] = NO_FIELDS
) -> LeaveResponse:
    """Leave the line (or give back an admission or a session). Answers the final state."""
    return await call.people.leave(call.room, call.caller, call.token())


@get(
    "/events",
    summary="Live updates (Server-Sent Events)",
    media_type="text/event-stream",
    security=BEARER,
    responses=error_answers(
        *QUEUE_TOKEN_ERRORS, *ROOM_ERRORS, *STORE_ERRORS, errors.TooManyStreams
    ),
)
async def events(
    call: NamedDependency[RoomCall],
    request: Request[Any, Any, Any],
    token: TokenQuery = "",
    last_event_id: LastEventId = "",
) -> EventStream:
    """Events: ``position`` (position, ahead, total, eta_seconds, eta_range), ``admitted``
    (redirect_url, access_token, claim_deadline), ``expired`` (reason), ``room`` (status:
    active, paused, maintenance), ``token`` (a re-signed queue token to keep), ``state``
    (left or completed). The stream opens with the person's current state, so a client
    that reconnects, to this pod or another, misses nothing; ids are the room's event
    sequence, and a ``Last-Event-ID`` equal to the current one skips the unchanged opening
    state. An open stream counts as a heartbeat. The token is the queue token
    (``?token=``, since EventSource cannot send headers; ``Authorization`` works too)."""
    # gateway/event_streams.py opens and writes streams before the framework, with these
    # same checks; this handler answers what it hands on (and describes the route)
    given = call.bearer or token
    if not given:
        raise errors.MissingToken()
    live = services_of(request.app.state).live
    start = await call.people.follow(call.room, call.caller, given)
    watcher = await live.open(call.room, start, call.caller, last_event_id)
    return EventStream(live, watcher, {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


people_router = Router(
    path="/v1/rooms/{room:str}",
    route_handlers=[enqueue, challenge, status, heartbeat, leave, events],
    dependencies=ROOM_CALL,
    tags=["people waiting"],
)
