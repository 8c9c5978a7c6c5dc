"""The event log: one typed definition per event, the subject naming and the stream.

Every state change a script makes appends one of these (as JSON) to the room's outbox;
the relay publishes it to JetStream on ``waitroom.<room>.<type>`` with ``Nats-Msg-Id`` =
``id``. ``seq`` rises strictly per room in the order the changes happened; ``v`` is the
schema version. Heartbeats are liveness, not events; a session keep-alive is an ``extended``
event only when it moves the session's deadline by a step (a tenth of session_ttl).
"""

from __future__ import annotations

from typing import Any

import msgspec

SUBJECT_PREFIX = "waitroom"
SCHEMA_VERSION = 1


def subject(room: str, event_type: str) -> str:
    return f"{SUBJECT_PREFIX}.{room}.{event_type}"


SNAPSHOT_PREFIX = "waitroom-snapshot"
"""Snapshots of rooms (shared/snapshots.py) go on the same stream, outside ``waitroom.>``:
a reader of events never meets them."""


def room_subjects(room: str) -> str:
    """Every event subject of one room."""
    return f"{SUBJECT_PREFIX}.{room}.>"


def snapshot_subject(room: str) -> str:
    return f"{SNAPSHOT_PREFIX}.{room}"


def stream_subjects() -> list[str]:
    return [f"{SUBJECT_PREFIX}.>", f"{SNAPSHOT_PREFIX}.>"]


class EventBase(msgspec.Struct, kw_only=True, tag_field="type", forbid_unknown_fields=False):
    v: int = SCHEMA_VERSION
    id: str
    room: str
    seq: int
    ts: float


class Enqueued(EventBase, tag="enqueued"):
    position_id: str
    arrival: int
    priority: int
    size: int
    incarnation: str = ""
    """The room incarnation the place belongs to (a restored place keeps its token's)."""
    ip_hash: str = ""
    metadata: str = ""
    bind: str = ""
    restored: bool = False
    lane: str = ""
    """The lane joined (a name or ``any``); empty in a room without lanes."""
    invite: str = ""
    """The id of the invite joined with (it gave the priority; one use spent)."""
    prequeue: bool = False
    """Joined before the line opened: waits in the pre-queue until it is placed."""
    draw: int = 0
    """In the pre-queue: the place in its draw (shared/policy.py draw_score)."""
    draw_seed: str = ""
    """The draw's seed, on the join that started the pre-queue."""


class Admitted(EventBase, tag="admitted"):
    position_id: str
    claim_deadline: int
    size: int
    arrival: int
    restored: bool = False
    """Made again for someone with a valid access token whose admission the store lost."""
    lane: str = ""
    """The lane whose units the party took (empty in a room without lanes)."""
    passed: list[str] = []
    """best_fit: the people ahead who did not fit and wanted these units; each has now been
    passed over once more."""
    direct: bool = False
    """Admitted at the door (passthrough, reject), without waiting in line."""


class Activated(EventBase, tag="activated"):
    position_id: str
    session_deadline: int


class Extended(EventBase, tag="extended"):
    """A visit kept alive: its session now ends at ``session_deadline`` (ms)."""

    position_id: str
    session_deadline: int


class Completed(EventBase, tag="completed"):
    position_id: str
    from_state: str
    size: int


class Expired(EventBase, tag="expired"):
    position_id: str
    reason: str
    from_state: str
    size: int


class Left(EventBase, tag="left"):
    position_id: str
    from_state: str
    size: int


class RoomUpdated(EventBase, tag="room_updated"):
    config: dict[str, Any]
    created: bool
    version: int
    incarnation: str = ""
    """A new id each time the room is created: event ids stay unique across a re-creation."""


class RoomDeleted(EventBase, tag="room_deleted"):
    pass


class PaceChanged(EventBase, tag="pace_changed"):
    """The admission pace of a room that follows its site (``auto_release``) changed, or
    stopped following it (``auto_release`` false: the pace is ``release_rate`` again)."""

    pace: float
    auto_release: bool
    release_rate: float
    target_latency_ms: int = 0
    site_p95_ms: float | None = None
    """The site's latency the change answers to; absent while no report came."""
    reports: int = 0


class LineOpened(EventBase, tag="line_opened"):
    """The line opened: the ``count`` people in the pre-queue, in the order the draw with
    ``seed`` gave them, go into the line in arrival slots ``base``, ``base`` + 1, ...
    (``prequeue_placed`` events, in batches)."""

    seed: str
    count: int
    base: int


class PrequeuePlaced(EventBase, tag="prequeue_placed"):
    """The next ``placed`` people of the pre-queue's draw went into the line; ``order`` is
    the sha1 of their ids joined by ``,``."""

    placed: int
    order: str


class InviteCreated(EventBase, tag="invite_created"):
    invite_id: str
    priority: int
    uses: int
    expires_at: int = 0
    """Epoch ms; 0: never."""


class InviteRevoked(EventBase, tag="invite_revoked"):
    invite_id: str


Event = (
    Enqueued
    | Admitted
    | Activated
    | Extended
    | Completed
    | Expired
    | Left
    | RoomUpdated
    | RoomDeleted
    | PaceChanged
    | LineOpened
    | PrequeuePlaced
    | InviteCreated
    | InviteRevoked
)

_decoder = msgspec.json.Decoder(Event)


def decode(raw: bytes | str) -> Event:
    event: Event = _decoder.decode(raw)
    return event


def event_type(event: Event) -> str:
    """The ``type`` of an event (msgspec keeps the tag on the class, not the instance)."""
    return str(type(event).__struct_config__.tag)
