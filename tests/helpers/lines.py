"""A gateway's copy of the lines (gateway/line_book.py), as tests look at it."""

from __future__ import annotations

from gateway.line_book import LineBook
from shared.store import RoomStore
from tests.helpers.servers import GatewayServer


def book(gw: GatewayServer) -> LineBook:
    lines = gw.app.state.services.people.lines
    assert isinstance(lines, LineBook)
    return lines


async def settled(store: RoomStore, gw: GatewayServer, room: str) -> bool:
    """The gateway's copy of the room's line is loaded and at the store's event counter."""
    line = book(gw).lines.get(room)
    counters = await store.event_counters([room])
    return line is not None and line.synced and line.event_seq == counters[room]
