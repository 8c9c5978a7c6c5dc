"""The operators' API, behind its own key (never the token signing key)."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, delete, get, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath

from gateway.bodies import read_body
from gateway.schemas import RoomFiguresOut, RoomOut, RoomPutOut, RoomsOut
from gateway.services import services_from_state
from shared.errors import RoomNotFound, Unauthorized
from shared.keys import ROOM_ID_PATTERN
from shared.room import RoomUpdate, from_stored
from shared.store import RoomStore, check_room_id


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Route guard: ``Authorization: Bearer <WAITROOM_ADMIN_KEY>``, compared in constant time."""
    expected = services_from_state(connection.app.state).settings.admin_key
    header = connection.headers.get("authorization", "")
    scheme, _sep, given = header.partition(" ")
    if (
        not expected
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), expected.encode())
    ):
        raise Unauthorized()


async def room_out(store: RoomStore, room: str) -> RoomOut:
    f = await store.figures(room)
    return RoomOut(
        room=room,
        config=from_stored(f.config),
        figures=RoomFiguresOut(
            waiting=f.waiting,
            admitted=f.admitted,
            active=f.active,
            used_units=f.stat("used_units"),
            admitted_total=f.stat("admitted_total"),
            expired_total=f.stat("expired_total"),
            enqueued_total=f.stat("enqueued_total"),
            completed_total=f.stat("completed_total"),
            left_total=f.stat("left_total"),
            admit_rate=round(f.admit_rate(), 3),
            outbox=f.outbox,
        ),
    )


@put("/v1/admin/rooms/{room:str}", summary="Create or update a room", guards=[require_admin])
async def put_room(
    room: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[RoomPutOut]:
    """Body: any of ``target_url, max_active, release_rate, max_queue_size, session_ttl,
    claim_window, heartbeat_interval, heartbeat_timeout, max_positions_per_ip, status,
    title, message``. Creating needs ``target_url``; the rest have defaults. Fields not
    given keep their value. 201 when created, 200 when updated."""
    svc = services_from_state(state)
    check_room_id(room)
    update = await read_body(request, RoomUpdate)
    assert update is not None
    config, created = await svc.store.put_room(room, update)
    return Response(
        RoomPutOut(room=room, created=created, config=config), status_code=201 if created else 200
    )


@get(
    "/v1/admin/rooms/{room:str}", summary="A room's config and live figures", guards=[require_admin]
)
async def get_room(room: FromPath[str], state: State) -> RoomOut:
    svc = services_from_state(state)
    if not ROOM_ID_PATTERN.match(room):
        raise RoomNotFound()
    return await room_out(svc.store, room)


@get("/v1/admin/rooms", summary="All rooms", guards=[require_admin])
async def list_rooms(state: State) -> RoomsOut:
    svc = services_from_state(state)
    out = []
    for room in await svc.store.rooms():
        try:
            out.append(await room_out(svc.store, room))
        except RoomNotFound:
            continue
    return RoomsOut(rooms=out)


@delete(
    "/v1/admin/rooms/{room:str}",
    status_code=200,
    summary="Remove a room and its state",
    guards=[require_admin],
)
async def delete_room(room: FromPath[str], state: State) -> dict[str, str]:
    svc = services_from_state(state)
    if not ROOM_ID_PATTERN.match(room):
        raise RoomNotFound()
    await svc.store.delete_room(room)
    return {"deleted": room}


@get(
    "/v1/admin/rooms/{room:str}/digest",
    summary="A digest of the room's state, to compare before and after a recovery",
    guards=[require_admin],
)
async def room_digest(room: FromPath[str], state: State) -> dict[str, str]:
    svc = services_from_state(state)
    if not ROOM_ID_PATTERN.match(room):
        raise RoomNotFound()
    return {"room": room, "digest": await svc.store.digest(room)}


ADMIN_ROUTES = [put_room, get_room, list_rooms, delete_room, room_digest]
