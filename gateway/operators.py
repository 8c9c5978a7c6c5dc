"""The operators' side: who may operate, and the rooms with their live figures."""

from __future__ import annotations

import hmac

from gateway.schemas import RoomFiguresOut, RoomOut, RoomPutOut, RoomsOut
from shared.errors import RoomNotFound, Unauthorized
from shared.room import RoomUpdate, from_stored
from shared.store import RoomFigures, RoomStore


class Operators:
    def __init__(self, store: RoomStore, admin_key: str) -> None:
        self.store = store
        self.admin_key = admin_key

    def authenticate(self, authorization: str) -> None:
        """``Authorization: Bearer <admin key>``, compared in constant time; no key set
        means nobody may operate."""
        scheme, _sep, given = authorization.partition(" ")
        if (
            not self.admin_key
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(given.strip().encode(), self.admin_key.encode())
        ):
            raise Unauthorized()

    async def put(self, room: str, update: RoomUpdate) -> RoomPutOut:
        config, created = await self.store.put_room(room, update)
        return RoomPutOut(room=room, created=created, config=config)

    async def get(self, room: str) -> RoomOut:
        return room_out(room, await self.store.figures(room))

    async def all(self) -> RoomsOut:
        out = []
        for room in await self.store.rooms():
            try:
                out.append(await self.get(room))
            except RoomNotFound:
                continue  # deleted between the listing and the read
        return RoomsOut(rooms=out)

    async def delete(self, room: str) -> None:
        await self.store.delete_room(room)

    async def digest(self, room: str) -> str:
        return await self.store.digest(room)


def room_out(room: str, f: RoomFigures) -> RoomOut:
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
