"""The operators' side: who may operate, and the rooms with their live figures."""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

import structlog

from gateway.config_guard import ConfigGuard
from gateway.i18n import catalogs
from gateway.invites import INVITE_ID, InviteSigner
from gateway.ratelimit import RateLimiter
from gateway.schemas import (
    InviteBody,
    InviteOut,
    InviteRevokedOut,
    RoomFiguresOut,
    RoomOut,
    RoomPutOut,
    RoomsOut,
)
from shared.errors import (
    InvalidBody,
    InviteNotFound,
    RateLimited,
    RoomNotFound,
    RoomRecovering,
    Unauthorized,
)
from shared.room import RoomUpdate, epoch_ms, from_stored, moment_of
from shared.store import RoomFigures, RoomStore

log = structlog.get_logger("operators")

MIN_ADMIN_KEY_LENGTH = 24


def admin_keys(configured: str) -> tuple[str, ...]:
    """The admin keys in force: ``WAITROOM_ADMIN_KEY`` may hold several, comma-separated,
    so a new key can be handed out before the old one is taken away. A key shorter than
    ``MIN_ADMIN_KEY_LENGTH`` is refused (the gateway does not start)."""
    keys = tuple(k.strip() for k in configured.split(",") if k.strip())
    short = [k for k in keys if len(k) < MIN_ADMIN_KEY_LENGTH]
    if short:
        raise ValueError(
            f"WAITROOM_ADMIN_KEY: every key needs at least {MIN_ADMIN_KEY_LENGTH} characters "
            f"({len(short)} shorter); make one with `openssl rand -base64 32`"
        )
    return keys


class Operators:
    def __init__(
        self,
        store: RoomStore,
        limiter: RateLimiter,
        keys: tuple[str, ...],
        *,
        invites: InviteSigner,
        guard: ConfigGuard | None = None,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.keys = tuple(k.encode() for k in keys)
        self.invites = invites
        self.guard = guard

    async def authenticate(self, authorization: str, address: str) -> None:
        """``Authorization: Bearer <admin key>``, any of the keys in force, compared in
        constant time; no key set means nobody may operate. Failures are logged and
        counted per address: past the limit the address gets 429, whatever it tries."""
        retry = await self.limiter.exhausted("admin_failures", address)
        if retry is not None:
            raise RateLimited("Too many failed admin attempts; wait.", retry_after=retry)
        scheme, _sep, given = authorization.partition(" ")
        offered = given.strip().encode()
        matched = False
        for key in self.keys:  # every key compared, so timing tells nothing of which
            matched |= hmac.compare_digest(offered, key)
        if scheme.lower() == "bearer" and matched:
            return
        log.warning("admin_auth_failed", address=address, scheme=scheme.lower()[:16])
        await self.limiter.hit("admin_failures", address)
        raise Unauthorized()

    async def put(self, room: str, update: RoomUpdate) -> RoomPutOut:
        if isinstance(update.texts, dict) and (unknown := catalogs().unknown_keys(update.texts)):
            raise InvalidBody(f"texts: no such message: {', '.join(unknown)}")
        result = await self.store.put_room_change(room, update)
        if self.guard is not None:  # made again should the store lose it before the stream
            self.guard.made(room, update, result)
        return RoomPutOut(room=room, created=result.created, config=from_stored(result.config))

    async def get(self, room: str) -> RoomOut:
        return room_out(room, await self.store.figures(room))

    async def all(self) -> RoomsOut:
        out = []
        for room in await self.store.rooms():
            try:
                out.append(await self.get(room))
            except (RoomNotFound, RoomRecovering):
                continue  # deleted between the listing and the read, or being rebuilt
        return RoomsOut(rooms=out)

    async def delete(self, room: str) -> None:
        await self.store.delete_room(room)

    async def digest(self, room: str) -> str:
        return await self.store.digest(room)

    async def invite(self, room: str, body: InviteBody, base_url: str) -> InviteOut:
        """Mint an invite; ``url`` is the room page that joins with it."""
        invite_id = self.invites.new_id()
        record = await self.store.create_invite(
            room,
            invite_id,
            priority=body.priority,
            uses=body.uses,
            expires_at_ms=epoch_ms(body.expires_at),
        )
        invite = self.invites.sign(room, invite_id)
        return InviteOut(
            id=invite_id,
            invite=invite,
            url=f"{base_url}/rooms/{room}?{urlencode({'invite': invite})}",
            priority=record.priority,
            uses=record.uses,
            expires_at=moment_of(record.expires_at),
        )

    async def revoke_invite(self, room: str, invite_id: str) -> InviteRevokedOut:
        if not INVITE_ID.match(invite_id):
            raise InviteNotFound()  # no invite has such an id
        record = await self.store.revoke_invite(room, invite_id)
        return InviteRevokedOut(id=invite_id, revoked=record.revoked, used=record.used)


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
            pace=round(f.pace(), 3),
            site_p95_ms=f.site_p95_ms(),
            prequeue=f.prequeue,
            lanes_used=f.lanes_used(),
            invites=f.invites,
        ),
    )
