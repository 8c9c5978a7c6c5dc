"""``waitroom audit``'s checks on streams made up here: clean ones pass, and each kind of
planted violation is found (tests/test_policies.py runs it on real streams)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.events import (
    Admitted,
    Completed,
    Enqueued,
    Event,
    InviteCreated,
    InviteRevoked,
    LineOpened,
    PrequeuePlaced,
    RoomUpdated,
)
from shared.policy import draw_score, order_digest, shuffle_order
from waitroom.audit import AuditReport, audit

pytestmark = pytest.mark.unit

BASE = 17_000_000_000_000


class Stream:
    """A room's events, written as the scripts would."""

    def __init__(self, **config: Any) -> None:
        self.events: list[Event] = []
        self.sizes: dict[str, int] = {}
        self.config: dict[str, Any] = {
            "max_active": 10,
            "lanes": {},
            "admission_policy": "strict",
            "max_skips": 3,
            "queueing_method": "fifo",
        }
        self.update(**config)

    def _head(self) -> dict[str, Any]:
        seq = len(self.events) + 1
        return {"id": f"r:inc:{seq}", "room": "r", "seq": seq, "ts": 1_700_000_000.0 + seq}

    def update(self, **config: Any) -> None:
        self.config.update(config)
        created = not self.events
        self.events.append(
            RoomUpdated(**self._head(), config=dict(self.config), created=created, version=1)
        )

    def join(self, pid: str, n: int, size: int = 1, **fields: Any) -> None:
        self.sizes[pid] = size
        self.events.append(
            Enqueued(
                **self._head(), position_id=pid, arrival=BASE + n, priority=0, size=size, **fields
            )
        )

    def admit(self, pid: str, lane: str = "", **fields: Any) -> None:
        self.events.append(
            Admitted(
                **self._head(),
                position_id=pid,
                claim_deadline=0,
                size=self.sizes[pid],
                arrival=0,
                lane=lane,
                **fields,
            )
        )

    def complete(self, pid: str) -> None:
        self.events.append(
            Completed(**self._head(), position_id=pid, from_state="admitted", size=self.sizes[pid])
        )

    def add(self, cls: type[Any], **fields: Any) -> None:
        self.events.append(cls(**self._head(), **fields))

    def audit(self) -> AuditReport:
        return audit("r", self.events)


def violations(stream: Stream) -> list[str]:
    return stream.audit().violations


def test_a_clean_fifo_run_passes() -> None:
    s = Stream(max_active=2)
    for n, pid in enumerate("abcd"):
        s.join(pid, n)
    s.admit("a")
    s.admit("b")
    s.complete("a")
    s.admit("c")
    report = s.audit()
    assert report.ok, report.violations
    assert report.admitted == 3
    assert report.peak_units == 2
    assert "OK" in report.summary()


def test_a_planted_inversion_is_found() -> None:
    s = Stream()
    for n, pid in enumerate("abc"):
        s.join(pid, n)
    s.admit("a")
    s.admit("c")  # b waits ahead of c
    found = violations(s)
    assert len(found) == 1
    assert "inversion" in found[0]
    assert "c admitted while b waited" in found[0]
    assert "1 violation" in s.audit().summary()


def test_order_is_kept_within_a_lane_not_across_lanes() -> None:
    s = Stream(max_active=30, lanes={"counter": 4, "table": 24})
    s.join("big", 0, size=5, lane="counter")  # can never fit the counter: holds nobody up
    s.join("t1", 1, size=4, lane="table")
    s.join("c1", 2, size=3, lane="counter")
    s.join("t2", 3, size=2, lane="table")
    s.admit("c1", lane="counter")  # another lane than t1's: fine
    s.admit("t2", lane="table")  # t1 of the same lane waits ahead
    found = violations(s)
    assert len(found) == 1, found
    assert "inversion: t2 admitted while t1 waited ahead of it in lane table" in found[0]


def test_capacity_of_the_room_and_of_each_lane() -> None:
    s = Stream(max_active=5)
    s.join("a", 0, size=3)
    s.join("b", 1, size=3)
    s.admit("a")
    s.admit("b")
    assert any("3 of 5 units in use" in v for v in violations(s))
    s = Stream(max_active=20, lanes={"counter": 4, "table": 16})
    s.join("a", 0, size=3, lane="any")
    s.join("b", 1, size=2, lane="counter")
    s.admit("a", lane="counter")
    s.admit("b", lane="counter")
    assert any("seated in counter with 1 units free" in v for v in violations(s))
    s = Stream(max_active=20, lanes={"counter": 4})
    s.join("a", 0, size=1)
    s.admit("a")
    assert any("without one" in v for v in violations(s))


def test_best_fit_counts_passes_and_stops_at_max_skips() -> None:
    s = Stream(max_active=4, admission_policy="best_fit", max_skips=2)
    s.join("big", 0, size=4)
    s.join("x", 1)
    s.admit("x", passed=["big"])  # big fit (all 4 units free): nobody who fits is passed
    assert any("past big, who fit" in v for v in violations(s))

    s = Stream(max_active=4, admission_policy="best_fit", max_skips=2)
    s.join("w", 0, size=2)
    s.admit("w")  # 2 of 4 in use
    s.join("big", 1, size=4)
    for n, pid in enumerate("xyz", 2):
        s.join(pid, n)
    s.admit("x", passed=["big"])
    s.complete("x")
    s.admit("y", passed=["big"])
    report = s.audit()
    assert report.ok, report.violations
    assert report.most_skips == 2
    s.complete("y")
    s.admit("z", passed=["big"])  # a third time
    assert any("big passed over 3 times (max_skips 2)" in v for v in violations(s))


def test_the_passes_an_admission_records_must_be_the_real_ones() -> None:
    s = Stream(max_active=4, admission_policy="best_fit")
    s.join("w", 0, size=2)
    s.admit("w")
    s.join("big", 1, size=4)
    s.join("x", 2)
    s.admit("x")  # big was passed over, and the event does not say so
    assert any("passes recorded (0)" in v for v in violations(s))


def test_a_lottery_draws_from_the_highest_priority() -> None:
    s = Stream(queueing_method="random")
    s.add(InviteCreated, invite_id="vip", priority=5, uses=1)
    s.join("a", 0)
    s.events.append(
        Enqueued(
            id="r:inc:9",
            room="r",
            seq=len(s.events) + 1,
            ts=1.0,
            position_id="v",
            arrival=BASE + 5,
            priority=5,
            size=1,
            invite="vip",
        )
    )
    s.sizes["v"] = 1
    s.admit("a")
    assert any("drawn at priority 0 while v waited at 5" in v for v in violations(s))


def test_invites_within_their_uses_priority_and_life() -> None:
    s = Stream()
    s.add(InviteCreated, invite_id="inv", priority=3, uses=1)

    def join_with(pid: str, n: int, priority: int) -> None:
        s.sizes[pid] = 1
        s.events.append(
            Enqueued(
                id=f"r:inc:{len(s.events) + 1}",
                room="r",
                seq=len(s.events) + 1,
                ts=1.0,
                position_id=pid,
                arrival=BASE + n,
                priority=priority,
                size=1,
                invite="inv",
            )
        )

    join_with("a", 0, 3)
    assert s.audit().ok
    join_with("b", 1, 3)
    assert any("used 2 times of 1" in v for v in violations(s))
    s = Stream()
    s.add(InviteCreated, invite_id="inv", priority=3, uses=5)
    s.add(InviteRevoked, invite_id="inv")
    join_with("c", 2, 0)
    found = violations(s)
    assert any("revoked" in v for v in found)
    assert any("its invite gives 3" in v for v in found)


def pre_queue(s: Stream, people: list[str], seed: str = "c0ffee") -> None:
    """People joining the pre-queue, the first one making its draw's seed."""
    for n, pid in enumerate(people):
        draw = draw_score(seed, pid)
        s.join(pid, n, prequeue=True, draw=draw, draw_seed=seed if n == 0 else "")


def test_the_pre_queue_is_placed_as_its_seed_draws() -> None:
    s = Stream(max_active=1)
    people = [f"p{n}" for n in range(6)]
    pre_queue(s, people)
    drawn = shuffle_order("c0ffee", people)
    s.add(LineOpened, seed="c0ffee", count=6, base=BASE)  # the last arrival less 6, plus 1
    s.join("late", 10)
    s.add(PrequeuePlaced, placed=4, order=order_digest(drawn[:4]))
    s.add(PrequeuePlaced, placed=2, order=order_digest(drawn[4:]))
    for pid in drawn:
        s.admit(pid)
        s.complete(pid)
    s.admit("late")
    report = s.audit()
    assert report.ok, report.violations
    assert report.openings == 1


def test_a_draw_the_seed_does_not_give_is_found() -> None:
    s = Stream()
    s.join("a", 0, prequeue=True, draw=draw_score("c0ffee", "a"), draw_seed="c0ffee")
    s.join("b", 1, prequeue=True, draw=0)  # first in the draw, by no seed's doing
    assert any("b got a place in the pre-queue's draw" in v for v in violations(s))


def test_a_pre_queue_placed_otherwise_is_found() -> None:
    people = [f"p{n}" for n in range(6)]
    drawn = shuffle_order("c0ffee", people)
    assert drawn[0] != "p0"
    s = Stream(max_active=1)
    pre_queue(s, people)
    s.add(LineOpened, seed="c0ffee", count=6, base=BASE + 1)  # the slots start at BASE
    s.add(PrequeuePlaced, placed=6, order=order_digest(people))  # join order, not the draw
    found = violations(s)
    assert any("opened with seed c0ffee, 6 people from" in v for v in found)  # wrong base
    assert any("other than the next 6 of the draw" in v for v in found)
    s = Stream(max_active=1)
    pre_queue(s, people)
    s.add(LineOpened, seed="c0ffee", count=6, base=BASE)
    s.add(PrequeuePlaced, placed=6, order=order_digest(drawn))
    s.admit("p0")  # admitted in join order, not the drawn one
    assert any("inversion: p0 admitted" in v for v in violations(s))
    s = Stream()
    pre_queue(s, ["early"])
    s.admit("early")  # before the line opened
    assert any("without waiting in the line" in v for v in violations(s))


def test_at_the_door_only_while_nobody_waits() -> None:
    s = Stream(queueing_method="passthrough", max_active=1)
    s.join("a", 0)
    s.admit("a", direct=True)
    s.join("b", 1)
    s.join("c", 2)
    s.complete("a")
    s.admit("c", direct=True)
    found = violations(s)
    assert any("at the door while others waited" in v for v in found)
