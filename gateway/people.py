"""The people waiting: join, where am I, still here, leave, claim an admission.

Every decision about a person's place that is not an atomic change of state (those are Lua
scripts behind ``RoomStore``) lives here, so the routes, the room page and the event
streams all answer the same way: which token is whose, when a token is re-signed, when a
place lost with the data store is put back, when a bearer's existing place is reused,
what an ``Idempotency-Key`` maps to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import Counter
from dataclasses import dataclass

import msgspec

from gateway.answers import access_expiry, go_url, place_answer, target_location
from gateway.caller import Caller, Linked
from gateway.invites import InviteSigner
from gateway.line_book import LineBook
from gateway.proof_of_work import Challenge, ProofOfWork
from gateway.ratelimit import RateLimiter
from gateway.schemas import EnqueueBody, LeaveResponse, PlaceResponse
from shared.errors import InvalidBody, PositionNotFound, WaitroomError, WrongRoom
from shared.room import RoomConfig
from shared.store import PersonView, RoomStore, require_room
from shared.tokens import QueueClaims, TokenService

MAX_METADATA_BYTES = 2048
LIVE_STATES = frozenset({"waiting", "admitted", "active"})
IDEMPOTENCY_KEY = re.compile(r"^[!-~]{8,128}$")
"""8-128 visible ASCII characters: what survives an HTTP header unchanged."""


@dataclass(frozen=True)
class Joined:
    answer: PlaceResponse
    created: bool


@dataclass
class Followed:
    """What an event stream starts from: the checked token, its claims, the place."""

    token: str
    claims: QueueClaims
    view: PersonView


class People:
    def __init__(
        self,
        store: RoomStore,
        tokens: TokenService,
        limiter: RateLimiter,
        *,
        salt: str,
        lines: LineBook | None = None,
    ) -> None:
        """``salt``: the deployment's secret for address hashes, retry place ids, proof
        of work challenges and invites; ``lines``: the lines this gateway keeps in memory
        (None: every answer from the store)."""
        self.store = store
        self.tokens = tokens
        self.limiter = limiter
        self.salt = salt
        self.pow = ProofOfWork(salt)
        self.invites = InviteSigner(salt)
        self.lines = lines
        self.heartbeats: Counter[str] = Counter()
        """Heartbeats accepted, by room (``waitroom_heartbeats``)."""
        self.remembered_answers = 0
        """Calls ``remembered`` answered (a figure for tests and the benchmark)."""

    async def challenge(self, room: str, caller: Caller) -> Challenge:
        """A proof-of-work challenge for this client, at the room's difficulty now."""
        config = await self.room(room)
        return self.pow.challenge(room, caller.client_id, config.pow_difficulty)

    async def room(self, room: str) -> RoomConfig:
        """The room's config (what its page shows); 404 for a room that does not exist,
        503 ``room_recovering`` while it is rebuilt and has no config yet."""
        return await require_room(self.store, room)

    # tokens and places ---------------------------------------------------------------
    def claims(self, room: str, token: str, caller: Caller) -> QueueClaims:
        """The claims of a queue token for this room, bound to this caller if binding is on."""
        return self.tokens.verify_queue(token, room, caller.binding)

    async def place_of(
        self, room: str, claims: QueueClaims, caller: Caller, *, touch: bool
    ) -> PersonView:
        """The person's place: from this gateway's memory of the line while they wait
        there (a heartbeat's mark then goes in the next batch), else from the store; if
        the data store lost it, put it back where the token says (in the same incarnation
        of the room only, and counted against the caller's address like any join). A place
        that ended is still known (for longer than any of its tokens lives), so it is
        answered as ended, never put back."""
        if self.lines is not None:
            remembered = self.lines.view(room, claims)
            if remembered is not None:
                if touch:
                    self.lines.seen(room, [claims.sub])
                return remembered
        try:
            view = await self.store.status(room, claims.sub, touch=touch)
        except PositionNotFound:
            restored = await self.store.enqueue(
                room,
                position_id=claims.sub,
                size=claims.size,
                priority=claims.priority,
                ip_hash=self.ip_hash(caller.address_key) if caller.address_key else "",
                bind=claims.bind,
                restore_arrival=claims.arrival,
                incarnation=claims.incarnation,
            )
            self._wrote(room, restored)
            return restored
        if view.incarnation != claims.incarnation:
            raise WrongRoom("The token belongs to an earlier room of this name.")
        return view

    async def kept_token(
        self, room: str, token: str, claims: QueueClaims, view: PersonView
    ) -> tuple[str, QueueClaims]:
        """The token the person should hold from now: re-signed when less than half of its
        life is left and the place is still live, else the same."""
        if view.state not in LIVE_STATES or not self.tokens.needs_refresh(claims):
            return token, claims
        fresh = await self.new_token(room, view)
        return fresh, self.tokens.verify_queue(fresh, room)

    async def new_token(self, room: str, view: PersonView) -> str:
        return await self.tokens.sign_queue(
            room,
            view.position_id,
            incarnation=view.incarnation,
            arrival=view.arrival,
            size=view.size,
            priority=view.priority,
            bind=view.bind,
        )

    async def answer(
        self,
        room: str,
        view: PersonView,
        *,
        linked: Linked,
        go_token: str,
        queue_token: str | None = None,
    ) -> PlaceResponse:
        """The answer about a place; ``go_token`` is the queue token the redirect URL
        carries (on ``linked``'s base, asked for only then), ``queue_token`` a new or
        refreshed token handed back. The access token is
        handed out only while the admission waits to be claimed: once ``/go`` has claimed
        it, the queue token is no way in any more."""
        if view.state != "admitted":
            return place_answer(view, queue_token=queue_token)
        access = await self.tokens.sign_access(
            room, view.position_id, iat=view.admitted_at // 1000, exp=access_expiry(view)
        )
        return place_answer(
            view,
            queue_token=queue_token,
            access_token=access,
            redirect_url=go_url(linked.base_url, room, go_token),
        )

    # the calls -----------------------------------------------------------------------
    async def join(
        self,
        room: str,
        caller: Caller,
        body: EnqueueBody,
        *,
        bearer: str | None,
        idempotency_key: str | None,
    ) -> Joined:
        """Join the line, or answer the live place the bearer's queue token already holds."""
        if bearer is not None:
            reused = await self._reuse(room, caller, bearer)
            if reused is not None:
                return Joined(reused, created=False)
        await self.limiter.check("enqueue", caller.address_key)
        metadata = msgspec.json.encode(body.metadata) if body.metadata else b""
        if len(metadata) > MAX_METADATA_BYTES:
            raise InvalidBody(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        invite_id = self.invites.check(room, body.invite) if body.invite else ""
        solved = None
        if body.pow is not None:
            solved = self.pow.check(room, caller.client_id, body.pow.challenge, body.pow.nonce)
        view = await self.store.enqueue(
            room,
            position_id=self._retry_position_id(room, idempotency_key),
            size=body.size,
            ip_hash=self.ip_hash(caller.address_key) if caller.address_key else "",
            metadata=metadata.decode(),
            bind=caller.binding or "",
            pow_id=solved.id if solved else "",
            pow_difficulty=solved.difficulty if solved else 0,
            pow_expires_ms=solved.expires_at * 1000 if solved else 0,
            lane=body.lane,
            invite_id=invite_id,
        )
        self._wrote(room, view)
        if not view.created and not self._may_hold(caller, view):
            # a replayed Idempotency-Key from another client: where the place stands, but
            # no token of it
            return Joined(place_answer(view), created=False)
        token = await self.new_token(room, view)
        answer = await self.answer(room, view, linked=caller, go_token=token, queue_token=token)
        return Joined(answer, created=view.created)

    def _wrote(self, room: str, view: PersonView) -> None:
        if self.lines is not None:
            self.lines.wrote(room, view)

    @staticmethod
    def _may_hold(caller: Caller, view: PersonView) -> bool:
        """Whether this caller may be handed tokens of this place: always, unless token
        binding is on and the place was bound to another client."""
        return caller.binding is None or not view.bind or view.bind == caller.binding

    async def _reuse(self, room: str, caller: Caller, bearer: str) -> PlaceResponse | None:
        try:
            claims = self.claims(room, bearer, caller)
            view = await self.place_of(room, claims, caller, touch=True)
        except WaitroomError as exc:
            if exc.status >= 500:
                raise
            return None  # not a place of this room (now): join afresh
        if view.state not in LIVE_STATES:
            return None  # that place has ended: a new one
        token, _ = await self.kept_token(room, bearer, claims, view)
        return await self.answer(room, view, linked=caller, go_token=token, queue_token=token)

    async def status(self, room: str, caller: Caller, token: str) -> PlaceResponse:
        claims = self.claims(room, token, caller)
        await self.limiter.check("status", room, claims.sub)
        view = await self.place_of(room, claims, caller, touch=False)
        return await self.answer(room, view, linked=caller, go_token=token)

    def remembered(
        self, room: str, caller: Caller, token: str, *, heartbeat: bool
    ) -> PlaceResponse | None:
        """The answer to a status call (or a heartbeat) when this gateway's memory has all
        of it: a token verified before, its place in the line copy, the caller's limit not
        used up, and for a heartbeat a token with more than half of its life left. Else
        None, with nothing counted or marked: the call then takes the full way (status,
        heartbeat), which answers errors and everything else. The answer equals theirs.
        It waits for nothing, so it can be answered as the request is parsed."""
        if self.lines is None:
            return None
        try:
            claims = self.claims(room, token, caller)
        except WaitroomError:
            return None
        kind = "heartbeat" if heartbeat else "status"
        if self.limiter.used_up_here(kind, room, claims.sub):
            return None
        if heartbeat and self.tokens.needs_refresh(claims):
            return None
        view = self.lines.view(room, claims)
        if view is None:
            return None
        self.limiter.count_here(kind, room, claims.sub)  # counts; not used up (above)
        self.remembered_answers += 1
        if not heartbeat:
            return place_answer(view)
        self.lines.seen(room, [claims.sub])
        self.heartbeats[room] += 1
        return place_answer(view, queue_token=token)

    async def heartbeat(self, room: str, caller: Caller, token: str) -> PlaceResponse:
        claims = self.claims(room, token, caller)
        await self.limiter.check("heartbeat", room, claims.sub)
        view = await self.place_of(room, claims, caller, touch=True)
        token, _ = await self.kept_token(room, token, claims, view)
        self.heartbeats[room] += 1
        return await self.answer(room, view, linked=caller, go_token=token, queue_token=token)

    async def leave(self, room: str, caller: Caller, token: str) -> LeaveResponse:
        claims = self.claims(room, token, caller)
        view = await self.store.leave(room, claims.sub)
        self._wrote(room, view)
        return LeaveResponse(position_id=view.position_id, state=view.state)

    async def go(self, room: str, caller: Caller, token: str) -> str:
        """Claim the admission (admitted -> active); the address of the protected site with
        the access token."""
        claims = self.claims(room, token, caller)
        view = await self.store.claim(room, claims.sub)
        self._wrote(room, view)
        access = await self.tokens.sign_access(
            room, view.position_id, iat=view.admitted_at // 1000, exp=access_expiry(view)
        )
        return target_location(view.target_url, access)

    async def follow(self, room: str, caller: Caller, token: str) -> Followed:
        """The start of an event stream: an open stream is a sign of life."""
        claims = self.claims(room, token, caller)
        await self.limiter.check("status", room, claims.sub)  # a reconnect loop is bounded
        view = await self.place_of(room, claims, caller, touch=True)
        return Followed(token=token, claims=claims, view=view)

    async def first_paint(self, room: str, caller: Caller, token: str | None) -> dict[str, object]:
        """What the room page shows before its script runs, from the token in its cookie."""
        if not token:
            return {}
        try:
            claims = self.claims(room, token, caller)
            view = await self.place_of(room, claims, caller, touch=True)
            answer = await self.answer(room, view, linked=caller, go_token=token)
        except WaitroomError as exc:
            if exc.status in (401, 403):
                return {"state": "expired", "reason": exc.code}
            return {}
        out = msgspec.structs.asdict(answer)
        out.pop("token", None)
        return {k: v for k, v in out.items() if v is not None}

    # identities ----------------------------------------------------------------------
    def ip_hash(self, ip: str) -> str:
        return hashlib.sha256(f"{self.salt}\n{ip}".encode()).hexdigest()[:16]

    def _retry_position_id(self, room: str, idempotency_key: str | None) -> str | None:
        """With an ``Idempotency-Key``, a retry (say, after a gateway died mid-request)
        lands on the same place: the place id is derived from the key."""
        if idempotency_key is None:
            return None
        if not IDEMPOTENCY_KEY.match(idempotency_key):
            raise InvalidBody("Idempotency-Key must be 8 to 128 visible ASCII characters.")
        mac = hmac.new(self.salt.encode(), f"{room}\n{idempotency_key}".encode(), "sha256")
        return base64.urlsafe_b64encode(mac.digest()[:12]).decode()
