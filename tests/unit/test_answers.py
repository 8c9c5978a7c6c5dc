"""What a person is told: position, wait estimate and its range, links (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.answers import eta_range, eta_seconds, go_url, place_answer, target_location
from shared.store import PersonView

pytestmark = pytest.mark.unit

NOW = 1_800_000_000_000


def view(**changes: Any) -> PersonView:
    fields: dict[str, Any] = {
        "position_id": "p1",
        "state": "waiting",
        "rank": 9,
        "total": 50,
        "arrival": 1,
        "size": 1,
        "priority": 0,
        "admitted_at": 0,
        "claim_deadline": 0,
        "session_deadline": 0,
        "reason": "",
        "bind": "",
        "room_status": "active",
        "release_rate": 2.0,
        "session_ttl": 600,
        "heartbeat_interval": 10,
        "target_url": "https://shop.example/checkout",
        "incarnation": "i1",
        "rate": 0.0,
        "rate_ts": 0,
        "rate_since": 0,
        "event_seq": 7,
        "now": NOW,
        "created": False,
    }
    fields.update(changes)
    return PersonView(**fields)


STEADY = {"rate": 3.0, "rate_ts": NOW, "rate_since": NOW - 600_000}
"""A decaying count equal to 3 admissions/s for long enough that there is no warm-up."""


def test_before_any_admission_the_release_rate_stands_in_with_a_wide_range() -> None:
    v = view(rank=9, release_rate=2.0)  # 10th in line, 2 people/s configured
    assert eta_seconds(v) == 5
    low, high = eta_range(v) or [0, 0]
    assert low <= 2
    assert high >= 10  # nothing observed yet: a wide range


def test_the_observed_rate_wins_and_the_range_narrows_with_evidence() -> None:
    v = view(rank=29, release_rate=100.0, **STEADY)
    assert eta_seconds(v) == 10  # 30 people at 3/s, not at the configured 100/s
    low, high = eta_range(v) or [0, 0]
    assert low <= 10 <= high
    assert high - low <= 6  # ~90 admissions seen: about +-25 %
    unobserved = eta_range(view(rank=29, release_rate=3.0)) or [0, 0]
    assert unobserved[1] - unobserved[0] > high - low


def test_people_ahead_leaving_shorten_the_wait() -> None:
    # 3 admitted and 1 leaving the line per second, 200 waiting: the 100 ahead thin out
    leaving = {"gone_rate": 1.0, "gone_rate_ts": NOW}
    stay = view(rank=99, total=200, **STEADY)
    go = view(rank=99, total=200, **STEADY, **leaving)
    assert eta_seconds(stay) == 34  # 100 at 3/s, plus this person's own turn
    assert eta_seconds(go) == 31  # ln(1 + h*99/3)/h + 1/3 with h = 1/200 per second
    assert (eta_range(go) or [0, 0])[0] < (eta_range(stay) or [0, 0])[0]


def test_a_room_following_its_site_is_estimated_at_the_pace_allowed() -> None:
    assert eta_seconds(view(rank=29, pace=1.0, **STEADY)) == 30  # 3/s seen, 1/s allowed now
    assert eta_seconds(view(rank=29, pace=5.0, **STEADY)) == 10
    stopped = view(rank=29, pace=0.0, **STEADY)  # the site is too slow: nobody goes in
    assert eta_seconds(stopped) is None
    assert eta_range(stopped) is None


def test_other_orders_than_first_come_widen_the_range() -> None:
    fifo = eta_range(view(rank=29, **STEADY)) or [0, 0]
    best_fit = eta_range(view(rank=29, admission_policy="best_fit", **STEADY)) or [0, 0]
    lanes = eta_range(view(rank=29, lane="table", **STEADY)) or [0, 0]
    assert best_fit[0] < fifo[0] <= fifo[1] < best_fit[1]
    assert lanes[0] < fifo[0] <= fifo[1] < lanes[1]


def test_a_lottery_is_estimated_from_the_whole_line_not_the_place() -> None:
    # random order: each admission is this person's with chance 1/60, whatever the place
    first = view(rank=0, total=60, queueing_method="random", **STEADY)
    last = view(rank=59, total=60, queueing_method="random", **STEADY)
    assert eta_seconds(first) == eta_seconds(last) == 20
    assert eta_range(first) == [2, 47]  # the exponential's 10th and 90th percentiles


@pytest.mark.parametrize("status", ["paused", "maintenance"])
def test_nobody_can_say_while_the_room_is_not_admitting(status: str) -> None:
    assert eta_seconds(view(room_status=status)) is None
    assert eta_range(view(room_status=status)) is None


def test_out_of_the_line_there_is_no_position_and_no_wait() -> None:
    admitted = view(state="admitted", rank=-1, claim_deadline=NOW + 60_000)
    assert admitted.position is None
    assert admitted.ahead is None
    assert eta_seconds(admitted) == 0
    answer = place_answer(admitted, access_token="A", redirect_url="https://w/go")
    assert answer.claim_deadline == (NOW + 60_000) / 1000
    assert answer.redirect_url == "https://w/go"
    waiting = place_answer(view(), redirect_url="https://w/go")
    assert waiting.redirect_url is None  # only an admitted place gets the link
    assert waiting.position == 10
    assert waiting.ahead == 9


def test_links_carry_their_tokens_encoded() -> None:
    assert go_url("https://w.example", "sale", "a.b+c") == (
        "https://w.example/rooms/sale/go?token=a.b%2Bc"
    )
    assert (
        target_location("https://shop.example/x", "T") == "https://shop.example/x?waitroom_token=T"
    )
    assert target_location("https://shop.example/x?a=1", "T") == (
        "https://shop.example/x?a=1&waitroom_token=T"
    )
