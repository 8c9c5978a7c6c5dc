"""``/v1/admin``: the operators' API, behind its own key (never the token signing key)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response, Router, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter

from gateway.caller import Caller, caller_of
from gateway.errors import BODY_ERRORS, ROOM_ERRORS, STORE_ERRORS, error_answers
from gateway.operators import Operators
from gateway.routes.common import BEARER, ROOM_ID, caller_of_request
from gateway.schemas import (
    InviteBody,
    InviteOut,
    InviteRevokedOut,
    RoomDeletedOut,
    RoomDigestOut,
    RoomOut,
    RoomPutOut,
    RoomsOut,
)
from gateway.services import services_of
from shared import errors
from shared.room import RoomUpdate

ADMIN_ERRORS = (errors.Unauthorized, errors.StoreUnavailable)


async def require_admin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Router guard: ``Authorization: Bearer <admin key>`` (see Operators.authenticate)."""
    services = services_of(connection.app.state)
    address = caller_of(connection, services.settings).address_key
    await services.operators.authenticate(connection.headers.get("authorization", ""), address)


@put(
    "/rooms/{room:str}",
    summary="Create or update a room",
    dependencies=ROOM_ID,
    responses={
        201: ResponseSpec(RoomPutOut, description="The room was created."),
        **error_answers(*ADMIN_ERRORS, *BODY_ERRORS, *ROOM_ERRORS, errors.RoomRecovering),
    },
)
async def put_room(
    room_id: NamedDependency[str], data: JSONBody[RoomUpdate], operators: NamedDependency[Operators]
) -> Response[RoomPutOut]:
    """Body: any room field (see the schema). Creating needs ``target_url``; the rest have
    defaults. Fields not given keep their value. 201 when created, 200 when updated."""
    out = await operators.put(room_id, data)
    return Response(out, status_code=201 if out.created else 200)


@get(
    "/rooms/{room:str}",
    summary="A room's config and live figures",
    dependencies=ROOM_ID,
    responses=error_answers(*ADMIN_ERRORS, *ROOM_ERRORS, *STORE_ERRORS),
)
async def get_room(room_id: NamedDependency[str], operators: NamedDependency[Operators]) -> RoomOut:
    return await operators.get(room_id)


@get("/rooms", summary="All rooms", responses=error_answers(*ADMIN_ERRORS))
async def list_rooms(operators: NamedDependency[Operators]) -> RoomsOut:
    return await operators.all()


@delete(
    "/rooms/{room:str}",
    status_code=200,
    summary="Remove a room and its state",
    dependencies=ROOM_ID,
    responses=error_answers(*ADMIN_ERRORS, *ROOM_ERRORS, *STORE_ERRORS),
)
async def delete_room(
    room_id: NamedDependency[str], operators: NamedDependency[Operators]
) -> RoomDeletedOut:
    await operators.delete(room_id)
    return RoomDeletedOut(deleted=room_id)


@get(
    "/rooms/{room:str}/digest",
    summary="A digest of the room's state, to compare before and after a recovery",
    dependencies=ROOM_ID,
    responses=error_answers(*ADMIN_ERRORS, *ROOM_ERRORS, *STORE_ERRORS),
)
async def room_digest(
    room_id: NamedDependency[str], operators: NamedDependency[Operators]
) -> RoomDigestOut:
    return RoomDigestOut(room=room_id, digest=await operators.digest(room_id))


@post(
    "/rooms/{room:str}/invites",
    summary="Mint a signed invite",
    dependencies={**ROOM_ID, "caller": Provide(caller_of_request, sync_to_thread=False)},
    responses=error_answers(
        *ADMIN_ERRORS, *BODY_ERRORS, *ROOM_ERRORS, errors.RoomRecovering, errors.Conflict
    ),
)
async def create_invite(
    room_id: NamedDependency[str],
    caller: NamedDependency[Caller],
    data: JSONBody[InviteBody],
    operators: NamedDependency[Operators],
) -> InviteOut:
    """Body ``{priority, uses, expires_at}`` (all optional: 1, 1, never). Whoever joins
    with the invite (``invite`` in the join body, or the room page opened at ``url``) is
    placed by its priority, then arrival, as long as it has uses left, has not expired and
    was not revoked."""
    return await operators.invite(room_id, data, caller.base_url)


InviteId = Annotated[str, PathParameter(description="The invite's ``id``.", max_length=64)]


@delete(
    "/rooms/{room:str}/invites/{invite_id:str}",
    status_code=200,
    summary="Revoke an invite",
    dependencies=ROOM_ID,
    responses=error_answers(
        *ADMIN_ERRORS, *ROOM_ERRORS, errors.RoomRecovering, errors.InviteNotFound
    ),
)
async def revoke_invite(
    room_id: NamedDependency[str], invite_id: InviteId, operators: NamedDependency[Operators]
) -> InviteRevokedOut:
    """Joins with it are refused from now on (409 ``invite_revoked``); places already
    taken with it stay. Revoking twice is fine."""
    return await operators.revoke_invite(room_id, invite_id)


admin_router = Router(
    path="/v1/admin",
    route_handlers=[
        put_room,
        get_room,
        list_rooms,
        delete_room,
        room_digest,
        create_invite,
        revoke_invite,
    ],
    guards=[require_admin],
    security=BEARER,
    tags=["operators"],
)
