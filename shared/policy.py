"""The room policies' rules in Python, the same as the Lua scripts apply them (_lib.lua
"Room policies"), for whoever checks a room from its event stream (``waitroom audit``).

Pure functions, no I/O. A change of a rule here needs the same change in _lib.lua; the
tests run both on the same cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from shared.line import MAX_PRIORITY

ANY = "any"
Short = Literal["never", "lane", "total"]
"""Why a party does not fit now: it never can (as the room is configured now: it holds
nobody up), no lane it may use has room, or a lane has and the room's total has not."""


DRAW_SPAN = 2**40
"""One priority's band of pre-queue draws (40 bits: every score stays within the 14 digits
cjson writes exactly)."""


def draw_score(seed: str, position_id: str, priority: int = 0) -> int:
    """Where a person stands in the pre-queue's draw (its sorted set's score): the first 40
    bits of sha1(seed:position_id), within their priority, higher first."""
    return (MAX_PRIORITY - priority) * DRAW_SPAN + int(_sha1(f"{seed}:{position_id}")[:10], 16)


def shuffle_order(seed: str, position_ids: Iterable[str]) -> list[str]:
    """The pre-queue's drawn order (of one priority): by sha1(seed:position_id), ties (one
    in a trillion) by id as a sorted set breaks them. A keyed hash orders the ids as a
    uniformly random permutation would, and anyone who knows the seed and who was in the
    pre-queue draws the same one."""
    return sorted(position_ids, key=lambda pid: (draw_score(seed, pid), pid))


def order_digest(order: list[str]) -> str:
    """What ``line_opened`` records of the drawn order: sha1 of the ids joined by ``,``."""
    return _sha1(",".join(order))


def _sha1(text: str) -> str:
    """sha1 because Lua has redis.sha1hex: a fair draw, no secret rests on it."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def lane_group(lane: str) -> str:
    """Whose order strict keeps: people of one lane, and those who joined ``any``."""
    return lane or ANY


@dataclass
class Capacity:
    """What a room has free: units in all and per lane."""

    max_active: int
    lanes: Mapping[str, int]
    used: int = 0
    seated: dict[str, int] = field(default_factory=dict)

    @property
    def total_free(self) -> int:
        return self.max_active - self.used

    def free(self, lane: str) -> int:
        return self.lanes[lane] - self.seated.get(lane, 0)

    def seat_for(self, lane: str, size: int) -> tuple[str | None, Short | None]:
        """Where a party of ``size`` that joined ``lane`` sits now: of the lanes it may
        use, the one with the least room that still fits it (``""`` in a room without
        lanes; ties go to the first name), or None and why not."""
        if size > self.max_active:
            return None, "never"
        if not self.lanes:
            return ("", None) if size <= self.total_free else (None, "total")
        mine = [n for n in sorted(self.lanes) if lane in ("", ANY, n)]
        fitting = [n for n in mine if self.free(n) >= size]
        if not fitting:
            possible = any(self.lanes[n] >= size for n in mine)
            return None, ("lane" if possible else "never")
        if size > self.total_free:
            return None, "total"
        return min(fitting, key=lambda n: (self.free(n), n)), None

    def competes(self, lane: str, short: Short | None, seat: str) -> bool:
        """Whether seating someone in ``seat`` passes over a party of ``lane`` ahead of
        them that does not fit (``short``): it does when they wanted the same units."""
        return short == "total" or not self.lanes or lane in ("", ANY) or lane == seat

    def take(self, seat: str, size: int) -> None:
        self.used += size
        if seat:
            self.seated[seat] = self.seated.get(seat, 0) + size

    def give_back(self, seat: str, size: int) -> None:
        self.used -= size
        if seat:
            self.seated[seat] = self.seated.get(seat, 0) - size
