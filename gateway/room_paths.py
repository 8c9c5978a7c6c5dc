"""The room of a call, read from its path before the framework routes it (the fast ways
in of fast_joins.py and event_streams.py)."""

from __future__ import annotations

from litestar.types import Scope

from shared import keys

PREFIX = "/v1/rooms/"


def room_of(scope: Scope, method: str, suffix: str) -> str | None:
    """The room of a ``method`` call to ``/v1/rooms/{room}<suffix>`` whose room id is
    valid, else None (the framework then answers, invalid ids included)."""
    path: str = scope["path"]
    if scope.get("method") != method or not path.startswith(PREFIX) or not path.endswith(suffix):
        return None
    room = path[len(PREFIX) : -len(suffix)]
    return room if keys.ROOM_ID_PATTERN.fullmatch(room) else None
