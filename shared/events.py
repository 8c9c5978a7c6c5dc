"""The event log: one typed definition per event, the subject naming and the stream.

Every state change a script makes appends one of these (as JSON) to the room's outbox;
the relay publishes it to JetStream on ``waitroom.<room>.<type>`` with ``Nats-Msg-Id`` =
``id``. ``seq`` rises strictly per room in the order the changes happened; ``v`` is the
schema version. Heartbeats and session keep-alives are liveness, not events.
"""

from __future__ import annotations

from typing import Any

import msgspec

SUBJECT_PREFIX = "waitroom"
SCHEMA_VERSION = 1


def subject(room: str, event_type: str) -> str:
    return f"{SUBJECT_PREFIX}.{room}.{event_type}"


def stream_subjects() -> list[str]:
    return [f"{SUBJECT_PREFIX}.>"]


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


class Admitted(EventBase, tag="admitted"):
    position_id: str
    claim_deadline: int
    size: int
    arrival: int


class Activated(EventBase, tag="activated"):
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


Event = (
    Enqueued
    | Admitted
    | Activated
    | Completed
    | Expired
    | Left
    | RoomUpdated
    | RoomDeleted
    | PaceChanged
)

_decoder = msgspec.json.Decoder(Event)


def decode(raw: bytes | str) -> Event:
    event: Event = _decoder.decode(raw)
    return event


def event_type(event: Event) -> str:
    """The ``type`` of an event (msgspec keeps the tag on the class, not the instance)."""
    return str(type(event).__struct_config__.tag)
