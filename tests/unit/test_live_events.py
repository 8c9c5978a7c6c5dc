"""Which stream events tell a client about a new answer, given what it was told last."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.live import NOTHING_TOLD, Told, events_for
from gateway.schemas import PlaceResponse

pytestmark = pytest.mark.unit


def answer(**changes: Any) -> PlaceResponse:
    fields: dict[str, Any] = {
        "position_id": "p1",
        "state": "waiting",
        "position": 3,
        "ahead": 2,
        "total": 10,
        "eta_seconds": 6,
        "eta_range": [3, 9],
        "heartbeat_interval": 10,
        "room_status": "active",
    }
    fields.update(changes)
    return PlaceResponse(**fields)


def told(a: PlaceResponse) -> Told:
    return Told.of(a)


def test_a_first_answer_tells_the_room_and_the_place() -> None:
    names = [name for name, _ in events_for(answer(), NOTHING_TOLD)]
    assert names == ["room", "position"]


def test_nothing_new_is_not_sent_again() -> None:
    a = answer()
    assert events_for(a, told(a)) == []


def test_a_move_in_line_is_a_position_event() -> None:
    out = events_for(answer(position=2, ahead=1), told(answer()))
    assert out == [
        (
            "position",
            {
                "state": "waiting",
                "position": 2,
                "ahead": 1,
                "total": 10,
                "eta_seconds": 6,
                "eta_range": [3, 9],
            },
        )
    ]


def test_admission_is_told_once_with_its_link() -> None:
    admitted = answer(
        state="admitted",
        position=None,
        ahead=None,
        access_token="A",
        redirect_url="https://w/go",
        claim_deadline=99.0,
    )
    ((name, data),) = events_for(admitted, told(answer()))
    assert name == "admitted"
    assert data["redirect_url"] == "https://w/go"
    assert data["access_token"] == "A"
    assert events_for(admitted, told(admitted)) == []


def test_a_pause_and_an_end() -> None:
    assert events_for(answer(room_status="paused"), told(answer())) == [
        ("room", {"status": "paused"})
    ]
    expired = answer(state="expired", reason="heartbeat_timeout")
    assert events_for(expired, told(answer())) == [
        ("expired", {"state": "expired", "reason": "heartbeat_timeout"})
    ]
    left = answer(state="left", reason="left")
    assert events_for(left, told(answer())) == [("state", {"state": "left", "reason": "left"})]


@pytest.mark.parametrize(
    "change",
    [{"position": 2}, {"ahead": 1}, {"total": 11}, {"eta_seconds": 5}, {"eta_range": [3, 8]}],
)
def test_any_figure_of_the_place_that_alone_changed_is_told(change: dict[str, Any]) -> None:
    ((name, data),) = events_for(answer(**change), told(answer()))
    assert name == "position"
    assert data.items() >= change.items()
