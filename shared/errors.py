"""The error vocabulary of waitroom: a stable ``code``, an HTTP status, a message.

Scripts fail with ``WR <code>``; the store turns that into the matching error here; the
gateway maps every ``WaitroomError`` to ``{"error": {"code", "message", "retry_after"}}``
in one place.
"""

from __future__ import annotations

import re
from typing import ClassVar


class WaitroomError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    message: ClassVar[str] = "The request cannot be served."
    retry_after: ClassVar[int | None] = None

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        self.detail = message or self.message
        self.retry = retry_after if retry_after is not None else self.retry_after
        super().__init__(self.detail)


def _error(
    code: str, status: int, message: str, retry_after: int | None = None
) -> type[WaitroomError]:
    attrs = {"code": code, "status": status, "message": message, "retry_after": retry_after}
    name = "".join(part.title() for part in code.split("_")) + "Error"
    return type(name, (WaitroomError,), attrs)


MalformedJson = _error("malformed_json", 400, "The body is not valid JSON.")
InvalidBody = _error("invalid_body", 400, "The body does not have the expected fields.")
InvalidRoomId = _error("invalid_room_id", 400, "Room ids are 1-64 letters, digits, - or _.")
PartyTooLarge = _error("party_too_large", 400, "The party is larger than the room's capacity.")
MissingToken = _error("missing_token", 401, "A bearer token is required.")
TokenInvalid = _error("token_invalid", 401, "The token is not valid.")
TokenExpired = _error("token_expired", 401, "The token has expired.")
WrongTokenType = _error("wrong_token_type", 401, "This token is of the wrong type here.")
Unauthorized = _error("unauthorized", 401, "A valid admin key is required.")
WrongRoom = _error("wrong_room", 403, "The token belongs to another room.")
TokenBindingMismatch = _error(
    "token_binding_mismatch", 403, "The token was issued to another client."
)
RoomNotFound = _error("room_not_found", 404, "No such room.")
PositionNotFound = _error("position_not_found", 404, "No such place in this room.")
NotFoundRoute = _error("not_found", 404, "No such resource.")
MethodNotAllowed = _error("method_not_allowed", 405, "That method is not allowed here.")
Conflict = _error("conflict", 409, "The resource changed meanwhile; try again.")
QueueFull = _error("queue_full", 409, "The line is full; try again later.", retry_after=30)
TooManyPositions = _error(
    "too_many_positions", 409, "This address already holds the most places allowed."
)
NotAdmitted = _error("not_admitted", 409, "This place has not been admitted yet.")
AlreadyClaimed = _error("already_claimed", 409, "This admission has already been claimed.")
AdmissionExpired = _error("admission_expired", 409, "The admission was not claimed in time.")
SessionEnded = _error("session_ended", 409, "This visit has ended.")
BodyTooLarge = _error("body_too_large", 413, "The request body is too large.")
BodyTimeout = _error("body_timeout", 408, "The request body did not arrive in time.")
HeadTooLarge = _error("head_too_large", 431, "The request line and header fields are too large.")
RateLimited = _error("rate_limited", 429, "Too many requests; slow down.", retry_after=1)
RoomMaintenance = _error(
    "room_maintenance", 503, "The room is under maintenance; try again later.", retry_after=30
)
RoomRecovering = _error(
    "room_recovering",
    503,
    "The room is being rebuilt from the event log; try again shortly.",
    retry_after=5,
)
StoreUnavailable = _error(
    "store_unavailable", 503, "The data store is unreachable; try again shortly.", retry_after=5
)
LeaseLost = _error("lease_lost", 409, "This replica no longer holds the room's lease.")
EventsBacklog = _error(
    "events_backlog",
    503,
    "The room's events cannot reach the event log now, so nobody new may join; people "
    "already waiting keep their places. Try again shortly.",
    retry_after=10,
)
InvalidForwardedFor = _error(
    "invalid_forwarded_for", 400, "X-Forwarded-For holds a hop that is not an address."
)
PowRequired = _error(
    "pow_required", 400, "This room asks for a solved challenge: GET its challenge first."
)
PowInvalid = _error("pow_invalid", 400, "The challenge solution is not valid.")
PowReused = _error("pow_reused", 409, "This challenge solution was used already.")
TooManyStreams = _error(
    "too_many_streams", 429, "Too many event streams are open for this place.", retry_after=5
)
UnknownLane = _error("unknown_lane", 400, "This room has no such lane.")
RoomClosed = _error("room_closed", 409, "This line has closed: no new places are given.")
RoomFull = _error("room_full", 409, "The room is full; try again later.", retry_after=30)
InviteInvalid = _error("invite_invalid", 400, "The invite is not valid for this room.")
InviteExpired = _error("invite_expired", 409, "The invite has expired.")
InviteUsedUp = _error("invite_used_up", 409, "The invite has been used as often as it may.")
InviteRevoked = _error("invite_revoked", 409, "The invite has been revoked.")
InviteNotFound = _error("invite_not_found", 404, "No such invite in this room.")

BadRole = _error("bad_role", 500, "A script was asked about a lease role it does not know.")
BadOp = _error("bad_op", 500, "A script was asked for an operation it does not know.")
BadEntryId = _error(
    "bad_entry_id", 500, "The relay asked to trim the outbox through something not an entry id."
)
ReplayGap = _error(
    "replay_gap", 500, "The event stream names a place the data store does not know."
)
ReplayUnknownType = _error(
    "replay_unknown_type", 500, "The event stream holds an event type this version cannot replay."
)
SnapshotUnreadable = _error(
    "snapshot_unreadable", 500, "A room's snapshot on the event stream cannot be read."
)
SnapshotTooNew = _error(
    "snapshot_too_new", 500, "A room's snapshot on the event stream is of a later version."
)
ReplayDiverged = _error(
    "replay_diverged", 500, "Replaying an event did not give the result the stream recorded."
)


def unreadable_room(marked_recovering: bool) -> WaitroomError:
    """Why a room's state cannot be read (its config is missing, or it is being rebuilt):
    a room carrying a recovering mark is being rebuilt (ask again shortly), else there is
    none. The reads by plain commands say what _lib.lua's ``room_for_read`` says."""
    return RoomRecovering() if marked_recovering else RoomNotFound()


SCRIPT_ERRORS: dict[str, type[WaitroomError]] = {
    **{
        cls.code: cls
        for cls in (
            InvalidRoomId,
            PartyTooLarge,
            RoomNotFound,
            PositionNotFound,
            Conflict,
            QueueFull,
            TooManyPositions,
            NotAdmitted,
            AlreadyClaimed,
            AdmissionExpired,
            SessionEnded,
            RoomMaintenance,
            RoomRecovering,
            LeaseLost,
            WrongRoom,
            PowRequired,
            PowInvalid,
            PowReused,
            BadRole,
            BadOp,
            BadEntryId,
            ReplayGap,
            ReplayUnknownType,
            EventsBacklog,
            ReplayDiverged,
            SnapshotUnreadable,
            SnapshotTooNew,
            UnknownLane,
            RoomClosed,
            RoomFull,
            InviteInvalid,
            InviteExpired,
            InviteUsedUp,
            InviteRevoked,
            InviteNotFound,
        )
    },
    # room_put.lua judges the merged config, invite_put.lua an invite; to the caller it is
    # a bad body
    "invalid_config": InvalidBody,
    "invalid_invite": InvalidBody,
}
"""Every code a Lua script fails with (``WR <code> [detail]``) and the error it becomes."""

_SCRIPT_POSITION = re.compile(r" script: .*$")


def from_script_error(message: str) -> WaitroomError | None:
    """The domain error a script answered (``WR <code> [detail]``), or None for any other
    error. A detail, when given, becomes the error's message."""
    if not message.startswith("WR "):
        return None
    code, _, detail = _SCRIPT_POSITION.sub("", message[3:]).strip().partition(" ")
    cls = SCRIPT_ERRORS.get(code)
    if cls is None:
        return WaitroomError(f"unexpected script error {code}")
    return cls(detail.strip() or None)
