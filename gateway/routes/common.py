"""What the routers share: the one room-id check, the caller, the bearer token.

The people's routes are the hot ones: everything they need is resolved by one
dependency (``RoomCall``), because Litestar resolves several independent dependencies of
a handler concurrently in a task group, which costs more than the work itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request
from litestar.di import Provide
from litestar.params import PathParameter

from gateway.caller import Caller, caller_of, optional_bearer
from gateway.people import People
from gateway.services import services_of
from shared import keys
from shared.errors import InvalidRoomId, MissingToken

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
    if not keys.ROOM_ID_PATTERN.fullmatch(room):
        raise InvalidRoomId()
    return room


@dataclass(frozen=True)
class RoomCall:
    """A call about a room, resolved once: the room (its id checked), who calls, the
    bearer token if one came, and the people's service."""

    room: str
    caller: Caller
    bearer: str | None
    people: People

    def token(self) -> str:
        """The bearer token; 401 ``missing_token`` without one."""
        if self.bearer is None:
            raise MissingToken()
        return self.bearer


def room_call(request: Request[Any, Any, Any], room: RoomParam) -> RoomCall:
    services = services_of(request.app.state)
    return RoomCall(
        room=valid_room_id(room),
        caller=caller_of(request, services.settings),
        bearer=optional_bearer(request),
        people=services.people,
    )


def caller_of_request(request: Request[Any, Any, Any]) -> Caller:
    return caller_of(request, services_of(request.app.state).settings)


ROOM_CALL = {"call": Provide(room_call, sync_to_thread=False)}
ROOM_ID = {"room_id": Provide(valid_room_id, sync_to_thread=False)}
