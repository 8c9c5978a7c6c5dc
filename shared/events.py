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


class Admitted(EventBase, tag="admitted"):
    position_id: str
    claim_deadline: int
    size: int
    arrival: int
    restored: bool = False
    """Made again for someone with a valid access token whose admission the store lost."""


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
)

_decoder = msgspec.json.Decoder(Event)


def decode(raw: bytes | str) -> Event:
    event: Event = _decoder.decode(raw)
    return event


def event_type(event: Event) -> str:
    """The ``type`` of an event (msgspec keeps the tag on the class, not the instance)."""
    return str(type(event).__struct_config__.tag)
