"""Request and response bodies of the public API (field names fixed by API.md)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from shared.keys import ROOM_ID_PATTERN
from shared.line import MAX_PRIORITY
from shared.room import LANE_PATTERN, Moment, RoomConfig, check_moment


class PowSolution(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A solved proof-of-work challenge (see ``GET /v1/rooms/{room}/challenge``)."""

    challenge: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    nonce: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class EnqueueBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    """Units the party takes; at most the room's ``max_party_size``."""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    """Up to 2048 bytes of JSON of the caller's own, kept with the place."""
    pow: PowSolution | None = None
    """Required when the room asks for proof of work."""
    lane: Annotated[str, msgspec.Meta(pattern=f"^$|{LANE_PATTERN}")] = ""
    """In a room with lanes: the lane to wait for, or ``any`` (the default) for whichever
    has room first."""
    invite: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    """An invite from the room's operators (the ``invite`` of an invite link): the place
    gets its priority."""


class ChallengeOut(msgspec.Struct, kw_only=True):
    """Find ``nonce`` with sha256(challenge + ":" + nonce) starting with ``difficulty``
    zero bits; send ``{"pow": {"challenge", "nonce"}}`` with the join before
    ``expires_at``. ``difficulty`` 0: the room asks for no proof (sending one is fine)."""

    challenge: str
    difficulty: int
    expires_at: int
    algorithm: str = "sha256-leading-zero-bits"


class VerifyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
    room: Annotated[str, msgspec.Meta(pattern=ROOM_ID_PATTERN.pattern)]
    """The room the site guards: a token of any other room is refused (403)."""


class NoFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """This call takes no fields yet: send no body, or ``{}``."""


Millis = Annotated[float, msgspec.Meta(ge=0, le=3_600_000)]


class LatencySummary(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The protected site's response times since its last report (WaitroomGuard measures
    them: from a request reaching it to the site starting its answer)."""

    count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
    """Requests measured."""
    p50_ms: Millis
    p95_ms: Millis
    max_ms: Millis


class SessionHeartbeatBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Optional: send no body, ``{}``, or the site's latency for a room whose pace follows
    its site (``auto_release``); the latency counts only with the guard's
    ``X-Waitroom-Report-Mac`` header (signed with WAITROOM_SITE_KEY)."""

    latency: LatencySummary | None = None


NO_FIELDS = NoFields()
NO_SESSION_FIELDS = SessionHeartbeatBody()
NO_ENQUEUE_FIELDS = EnqueueBody()
"""What an optional body stands for when it is left out."""


class ErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    """Stable: clients may branch on it (see each route's error answers)."""
    message: str
    retry_after: int | None = None
    """Seconds to wait before trying again, where waiting helps (also ``Retry-After``)."""


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error the API answers."""

    error: ErrorDetail


class PlaceResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where a person stands. ``position``/``ahead`` are null once out of the line;
    ``eta_seconds`` (with ``eta_range``, a low-high band that narrows as the room's observed
    admissions accumulate) is null while the room is paused or in maintenance."""

    position_id: str
    state: str
    position: int | None
    ahead: int | None
    total: int
    eta_seconds: int | None
    eta_range: list[int] | None
    heartbeat_interval: int
    room_status: str
    token: str | None = None
    access_token: str | None = None
    redirect_url: str | None = None
    claim_deadline: float | None = None
    reason: str | None = None
    lane: str | None = None
    """The lane joined, in a room with lanes."""
    opens_at: float | None = None
    """In the pre-queue: when the line opens (epoch seconds). Then everyone in the
    pre-queue gets a place drawn at random, ahead of later arrivals."""


class LeaveResponse(msgspec.Struct, kw_only=True):
    position_id: str
    state: str


class VerifyResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    active: bool
    room: str
    sub: str
    exp: int
    state: str | None = None
    checked: str = "store"


class SessionResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    active: bool
    room: str
    sub: str
    state: str
    session_deadline: float | None = None
    access_token: str | None = None


class RoomFiguresOut(msgspec.Struct, kw_only=True):
    waiting: int
    admitted: int
    active: int
    used_units: int
    admitted_total: int
    expired_total: int
    enqueued_total: int
    completed_total: int
    left_total: int
    admit_rate: float
    outbox: int
    pace: float
    """Admissions per second allowed now: release_rate, or less while the room follows its
    site (auto_release) and the site is slower than target_latency_ms."""
    site_p95_ms: float | None = None
    """The site's 95th-percentile response time its WaitroomGuard reported over the last
    10 s (the weighted median of the reports); null without reports."""
    prequeue: int = 0
    """People in the pre-queue, waiting for the line to open."""
    lanes_used: dict[str, int] = msgspec.field(default_factory=dict)
    """Units seated in each lane now."""
    invites: int = 0
    """Invites minted for the room (revoked ones included)."""


class RoomOut(msgspec.Struct, kw_only=True):
    room: str
    config: RoomConfig
    figures: RoomFiguresOut


class RoomPutOut(msgspec.Struct, kw_only=True):
    room: str
    created: bool
    config: RoomConfig


class RoomsOut(msgspec.Struct, kw_only=True):
    rooms: list[RoomOut]


class RoomDeletedOut(msgspec.Struct, kw_only=True):
    deleted: str


class InviteBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    priority: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRIORITY)] = 1
    """Places of higher priority go first (0 is everyone's without an invite)."""
    uses: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
    """How many joins it admits to the line."""
    expires_at: Moment | None = None
    """After this, it is refused (null: never)."""

    def __post_init__(self) -> None:
        check_moment("expires_at", self.expires_at)


class InviteOut(msgspec.Struct, kw_only=True):
    id: str
    """Names the invite to revoke it."""
    invite: str
    """What a join sends as ``invite``."""
    url: str
    """The room page with the invite: whoever opens it joins with it."""
    priority: int
    uses: int
    expires_at: Moment | None


class InviteRevokedOut(msgspec.Struct, kw_only=True):
    id: str
    revoked: bool
    used: int
    """How many joins it had admitted."""


class RoomDigestOut(msgspec.Struct, kw_only=True):
    room: str
    digest: str


class Ready(msgspec.Struct, kw_only=True):
    ready: bool
    store: bool
    nats: bool
    outbox_ok: bool
    backlog: int
