"""Every Redis key name waitroom uses, in one place.

All keys of a room carry the hash tag ``{room}`` so the room lives on one shard and one
Lua script may touch all of them. Scripts get the whole ``RoomKeys.all()`` list in KEYS,
always in the same order, so each script names every key it may touch (DragonFly and
Redis Cluster refuse undeclared keys).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "wr"
ROOMS_SET = f"{PREFIX}:rooms"
"""Index of live rooms (a plain set outside any room's slot; written after the room)."""
DRAINING_SET = f"{PREFIX}:rooms:draining"
"""Rooms deleted while their outbox still holds events the relay has not delivered."""

ROOM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Room ids appear in NATS subjects and key names: no dots, spaces or wildcards."""

ROOM_KEY_NAMES = (
    "cfg",
    "stats",
    "line",
    "seen",
    "people",
    "admitted",
    "active",
    "ips",
    "ended",
    "outbox",
    "pow",
    "latency",
    "invites",
    "prequeue",
)
"""A room's keys in KEYS order; the lease keys (one per role) follow. The Lua side's
``K_<NAME>`` locals are generated from this (shared/scripts.py)."""

LEASE_ROLES = ("admission", "heartbeat", "relay")


ROLE_KEY_NAMES = ("replicas", "releases")
"""The keys of one worker role, in the order its scripts receive them (``RoleKeys.all``)."""


@dataclass(frozen=True)
class RoleKeys:
    """The keys of one worker role, under the hash tag ``{role:<role>}`` (one slot)."""

    role: str

    @property
    def replicas(self) -> str:
        """Sorted set of the role's live replicas, scored by when their marks run out."""
        return f"{PREFIX}:{{role:{self.role}}}:replicas"

    @property
    def releases(self) -> str:
        """Counter of the role's room leases given up early (handed over, released on a
        stop): the others ask for free rooms at once when it moves."""
        return f"{PREFIX}:{{role:{self.role}}}:releases"

    def all(self) -> list[str]:
        """The KEYS list every role script receives: ``ROLE_KEY_NAMES``."""
        return [getattr(self, name) for name in ROLE_KEY_NAMES]


@dataclass(frozen=True)
class RoomKeys:
    room: str

    def _k(self, name: str) -> str:
        return f"{PREFIX}:{{{self.room}}}:{name}"

    @property
    def cfg(self) -> str:
        return self._k("cfg")

    @property
    def stats(self) -> str:
        return self._k("stats")

    @property
    def line(self) -> str:
        return self._k("line")

    @property
    def seen(self) -> str:
        return self._k("seen")

    @property
    def people(self) -> str:
        return self._k("people")

    @property
    def admitted(self) -> str:
        return self._k("admitted")

    @property
    def active(self) -> str:
        return self._k("active")

    @property
    def ips(self) -> str:
        return self._k("ips")

    @property
    def ended(self) -> str:
        return self._k("ended")

    @property
    def outbox(self) -> str:
        return self._k("outbox")

    def lease(self, role: str) -> str:
        return self._k(f"lease:{role}")

    @property
    def pow(self) -> str:
        """Spent proof-of-work challenge ids, scored by when they expire."""
        return self._k("pow")

    @property
    def latency(self) -> str:
        """The protected site's latency reports (WaitroomGuard), one per place, latest."""
        return self._k("latency")

    def invites(self) -> str:
        """The room's invites: id -> JSON {priority, uses, used, expires_at, revoked}."""
        return self._k("invites")

    @property
    def prequeue(self) -> str:
        """People who joined before opens_at, scored by arrival, until the line opens."""
        return self._k("prequeue")

    def all(self) -> list[str]:
        """The KEYS list every room script receives: ``ROOM_KEY_NAMES``, then the leases."""
        return [
            *(self._k(name) for name in ROOM_KEY_NAMES),
            *(self.lease(role) for role in LEASE_ROLES),
        ]
