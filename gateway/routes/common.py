"""What the routers share: the one room-id check, the caller, the bearer token."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.di import Provide
from litestar.params import PathParameter

from gateway.caller import Caller, bearer_token, caller_of
from gateway.services import services_of
from shared import keys
from shared.errors import InvalidRoomId

RoomParam = Annotated[
    str,
    PathParameter(
        description="The room's id: 1-64 letters, digits, - or _.",
        schema_extra={"pattern": keys.ROOM_ID_PATTERN.pattern},
    ),
]
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def valid_room_id(room: RoomParam) -> str:
    """Every route that names a room checks its id here, with one answer: 400
    ``invalid_room_id`` (such an id can name no room)."""
    if not keys.ROOM_ID_PATTERN.match(room):
        raise InvalidRoomId()
    return room


def caller(request: Request[Any, Any, Any]) -> Caller:
    settings = services_of(request.app.state).settings
    return caller_of(request, settings)


def queue_token(request: Request[Any, Any, Any]) -> str:
    """The queue token from ``Authorization: Bearer``."""
    return bearer_token(request)


ROOM_ID = {"room_id": Provide(valid_room_id, sync_to_thread=False)}
CALLER = {"caller": Provide(caller, sync_to_thread=False)}
QUEUE_TOKEN = {"token": Provide(queue_token, sync_to_thread=False)}
