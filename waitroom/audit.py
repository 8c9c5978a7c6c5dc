"""Checking from its event stream alone that a room let people in by its policy.

The room is replayed event by event into a small model (who waits where, who holds which
units, the config in force) and every admission is judged against the state just before
it, with the same rules the scripts use (shared/policy.py):

- capacity: no admission takes the room past ``max_active`` or a lane past its units;
- order (fifo, passthrough, reject under ``strict``): nobody is admitted while someone of
  the same lane (or ``any``) waits ahead of them, unless that party can never fit;
- ``best_fit``: nobody who fits is passed over, and nobody who does not is passed over
  more than ``max_skips`` times (a pass counts when the admitted party took units the
  passed one wanted); the passes each admission records are the ones that happened;
- ``random``: nobody is drawn while someone of a higher priority waits;
- at the door (passthrough, reject): only while nobody waits;
- the pre-queue: everyone's place in its draw is the one its recorded seed gives, and the
  opening places them into the line in that order;
- invites: never used more often than minted, after revocation or expiry, or at another
  priority.

Pure: it takes decoded events (``waitroom audit`` reads them from the stream).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.events import (
    Activated,
    Admitted,
    Completed,
    Enqueued,
    Event,
    Expired,
    InviteCreated,
    InviteRevoked,
    Left,
    LineOpened,
    PrequeuePlaced,
    RoomDeleted,
    RoomUpdated,
)
from shared.line import MAX_PRIORITY, PRIORITY_SPAN
from shared.policy import Capacity, draw_score, lane_group, order_digest

LIVE = ("admitted", "active")


@dataclass
class Person:
    position_id: str
    arrival: int
    priority: int
    size: int
    lane: str
    pre: bool
    draw: int = 0
    state: str = "waiting"
    seat: str = ""
    skips: int = 0

    @property
    def score(self) -> tuple[int, str]:
        """Where the line puts them: priority, then arrival (ties by id, as a sorted set)."""
        return (MAX_PRIORITY - self.priority) * PRIORITY_SPAN + self.arrival, self.position_id


@dataclass
class Invite:
    priority: int
    uses: int
    expires_at: int
    used: int = 0
    revoked: bool = False


@dataclass
class AuditReport:
    room: str
    events: int = 0
    admitted: int = 0
    at_the_door: int = 0
    openings: int = 0
    invites_used: int = 0
    most_skips: int = 0
    peak_units: int = 0
    peak_lanes: dict[str, int] = field(default_factory=dict)
    policies: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        lanes = ", ".join(f"{n} {u}" for n, u in sorted(self.peak_lanes.items())) or "none"
        lines = [
            f"room {self.room}: {self.events} events, {self.admitted} admitted "
            f"({self.at_the_door} at the door), policies {', '.join(sorted(self.policies))}",
            f"  peak units {self.peak_units}; peak per lane: {lanes}; most passes of one "
            f"party {self.most_skips}; pre-queue openings {self.openings}; invite uses "
            f"{self.invites_used}",
        ]
        if self.ok:
            lines.append("  OK: every admission followed the room's policy")
        else:
            lines.append(f"  {len(self.violations)} violation(s):")
            lines += [f"  - {v}" for v in self.violations]
        return "\n".join(lines) + "\n"


class RoomAudit:
    """One room's state, rebuilt from its events, and the admissions judged on it."""

    def __init__(self, room: str) -> None:
        self.report = AuditReport(room)
        self._reset()

    def _reset(self) -> None:
        self.config: dict[str, Any] = {}
        self.people: dict[str, Person] = {}
        self.invites: dict[str, Invite] = {}
        self.cap = Capacity(max_active=0, lanes={})
        self.draw_seed = ""
        self.prequeue_last = 0
        self.open_base: int | None = None
        self.open_rank = 0

    def violation(self, event: Event, text: str) -> None:
        self.report.violations.append(f"seq {event.seq}: {text}")

    def apply(self, event: Event) -> None:
        self.report.events += 1
        match event:
            case RoomUpdated():
                self.config = event.config
                self.cap.max_active = int(event.config.get("max_active", 0))
                self.cap.lanes = dict(event.config.get("lanes") or {})
                self.report.policies.add(self._policy())
            case RoomDeleted():
                self._reset()
            case Enqueued():
                self._enqueued(event)
            case LineOpened():
                self._opened(event)
            case PrequeuePlaced():
                self._placed(event)
            case Admitted():
                self._admitted(event)
            case Activated():
                if event.position_id in self.people:
                    self.people[event.position_id].state = "active"
            case Completed() | Expired() | Left():
                self._ended(event.position_id)
            case InviteCreated():
                self.invites[event.invite_id] = Invite(event.priority, event.uses, event.expires_at)
            case InviteRevoked():
                if event.invite_id in self.invites:
                    self.invites[event.invite_id].revoked = True

    def _policy(self) -> str:
        method = self.config.get("queueing_method", "fifo")
        return f"{method}/{self.config.get('admission_policy', 'strict')}"

    def _enqueued(self, e: Enqueued) -> None:
        self.people[e.position_id] = Person(
            e.position_id, e.arrival, e.priority, e.size, e.lane, e.prequeue, e.draw
        )
        if e.prequeue:
            self.draw_seed = e.draw_seed or self.draw_seed
            self.prequeue_last = max(self.prequeue_last, e.arrival)
            if e.draw != draw_score(self.draw_seed, e.position_id, e.priority):
                self.violation(
                    e,
                    f"{e.position_id} got a place in the pre-queue's draw that "
                    f"its seed does not give",
                )
        if not e.invite:
            return
        self.report.invites_used += 1
        invite = self.invites.get(e.invite)
        if invite is None:
            self.violation(e, f"{e.position_id} joined with an invite never minted")
            return
        invite.used += 1
        ts_ms = round(e.ts * 1000)
        if invite.revoked:
            self.violation(e, f"{e.position_id} joined with a revoked invite")
        if invite.expires_at and ts_ms >= invite.expires_at:
            self.violation(e, f"{e.position_id} joined with an expired invite")
        if invite.used > invite.uses:
            self.violation(e, f"invite {e.invite} used {invite.used} times of {invite.uses}")
        if e.priority != invite.priority:
            self.violation(
                e,
                f"{e.position_id} joined at priority {e.priority}, its invite "
                f"gives {invite.priority}",
            )

    def _prequeue(self) -> list[Person]:
        """Who waits in the pre-queue, in the order of its draw."""
        waiting = [p for p in self.people.values() if p.pre and p.state == "waiting"]
        return sorted(waiting, key=lambda p: (p.draw, p.position_id))

    def _opened(self, e: LineOpened) -> None:
        self.report.openings += 1
        count = len(self._prequeue())
        base = self.prequeue_last - count + 1
        if (e.seed, e.count, e.base) != (self.draw_seed, count, base):
            self.violation(
                e,
                f"the line opened with seed {e.seed}, {e.count} people from "
                f"{e.base}; the stream gives {self.draw_seed}, {count} from {base}",
            )
        self.open_base, self.open_rank = e.base, 0

    def _placed(self, e: PrequeuePlaced) -> None:
        if self.open_base is None:
            self.violation(e, "people placed from a pre-queue that never opened")
            return
        waiting = self._prequeue()
        batch = waiting[: e.placed]
        if order_digest([p.position_id for p in batch]) != e.order:
            self.violation(
                e,
                f"the opening placed {e.placed} people other than the next "
                f"{len(batch)} of the draw",
            )
        for person in batch:
            person.arrival, person.pre = self.open_base + self.open_rank, False
            self.open_rank += 1
        if len(batch) == len(waiting):  # the pre-queue is empty: the next one starts afresh
            self.draw_seed, self.prequeue_last, self.open_base = "", 0, None

    def _ended(self, position_id: str) -> None:
        person = self.people.pop(position_id, None)
        if person is not None and person.state in LIVE:
            self.cap.give_back(person.seat, person.size)

    def _admitted(self, e: Admitted) -> None:
        self.report.admitted += 1
        person = self.people.get(e.position_id)
        if person is None or person.state != "waiting" or person.pre:
            self.violation(e, f"{e.position_id} admitted without waiting in the line")
            return
        self._check_capacity(e, person)
        ahead = sorted(
            (
                p
                for p in self.people.values()
                if p.state == "waiting" and not p.pre and p.score < person.score
            ),
            key=lambda p: p.score,
        )
        if e.direct:
            self.report.at_the_door += 1
            if any(p.state == "waiting" for p in self.people.values() if p is not person):
                self.violation(e, f"{e.position_id} admitted at the door while others waited")
        elif self.config.get("queueing_method") == "random":
            higher = [p for p in ahead if p.priority > person.priority]
            if higher:
                self.violation(
                    e,
                    f"{e.position_id} drawn at priority {person.priority} while "
                    f"{higher[0].position_id} waited at {higher[0].priority}",
                )
        elif self.config.get("admission_policy") == "best_fit":
            self._check_passes(e, ahead)
        else:
            self._check_order(e, person, ahead)
        person.state, person.seat = "admitted", e.lane
        self.cap.take(e.lane, person.size)
        self.report.peak_units = max(self.report.peak_units, self.cap.used)
        for lane, units in self.cap.seated.items():
            self.report.peak_lanes[lane] = max(self.report.peak_lanes.get(lane, 0), units)

    def _check_capacity(self, e: Admitted, person: Person) -> None:
        if self.cap.used + person.size > self.cap.max_active:
            self.violation(
                e,
                f"{e.position_id} admitted with {self.cap.used} of "
                f"{self.cap.max_active} units in use (party of {person.size})",
            )
        if e.lane:
            if e.lane not in self.cap.lanes:
                self.violation(e, f"{e.position_id} seated in {e.lane!r}, not a lane")
            elif self.cap.free(e.lane) < person.size:
                self.violation(
                    e,
                    f"{e.position_id} seated in {e.lane} with "
                    f"{self.cap.free(e.lane)} units free (party of {person.size})",
                )
            elif person.lane not in ("", "any", e.lane):
                self.violation(e, f"{e.position_id} joined {person.lane}, seated in {e.lane}")
        elif self.cap.lanes:
            self.violation(e, f"{e.position_id} admitted to a room with lanes without one")

    def _check_order(self, e: Admitted, person: Person, ahead: list[Person]) -> None:
        group = lane_group(person.lane)
        for other in ahead:
            if lane_group(other.lane) == group and self._can_ever_fit(other):
                self.violation(
                    e,
                    f"inversion: {e.position_id} admitted while "
                    f"{other.position_id} waited ahead of it in lane {group}",
                )
                return

    def _check_passes(self, e: Admitted, ahead: list[Person]) -> None:
        max_skips = int(self.config.get("max_skips", 3))
        passed = []
        for other in ahead:
            seat, short = self.cap.seat_for(other.lane, other.size)
            if short == "never":
                continue
            if seat is not None:
                self.violation(e, f"{e.position_id} admitted past {other.position_id}, who fit")
                continue
            if self.cap.competes(other.lane, short, e.lane):
                other.skips += 1
                passed.append(other.position_id)
                self.report.most_skips = max(self.report.most_skips, other.skips)
                if other.skips > max_skips:
                    self.violation(
                        e,
                        f"{other.position_id} passed over {other.skips} times "
                        f"(max_skips {max_skips})",
                    )
        if sorted(passed) != sorted(e.passed):
            self.violation(
                e,
                f"the passes recorded ({len(e.passed)}) are not the ones that "
                f"happened ({len(passed)})",
            )

    def _can_ever_fit(self, person: Person) -> bool:
        return self.cap.seat_for(person.lane, person.size)[1] != "never"


def audit(room: str, events: Iterable[Event]) -> AuditReport:
    """Judge a room's admissions from its events, in stream order."""
    checker = RoomAudit(room)
    for event in events:
        checker.apply(event)
    return checker.report
