"""``/v1/admin``: the operators' API, behind its own key (never the token signing key)."""

from __future__ import annotations

from typing import Any

from litestar import Response, Router, delete, get, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody

from gateway.caller import caller_of
from gateway.errors import BODY_ERRORS, ROOM_ERRORS, STORE_ERRORS, error_answers
from gateway.operators import Operators
from gateway.routes.common import BEARER, ROOM_ID
from gateway.schemas import RoomDeletedOut, RoomDigestOut, RoomOut, RoomPutOut, RoomsOut
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
    responses=error_answers(*ADMIN_ERRORS, *ROOM_ERRORS),
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
    responses=error_answers(*ADMIN_ERRORS, *ROOM_ERRORS),
)
async def room_digest(
    room_id: NamedDependency[str], operators: NamedDependency[Operators]
) -> RoomDigestOut:
    return RoomDigestOut(room=room_id, digest=await operators.digest(room_id))


admin_router = Router(
    path="/v1/admin",
    route_handlers=[put_room, get_room, list_rooms, delete_room, room_digest],
    guards=[require_admin],
    security=BEARER,
    tags=["operators"],
)
