"""A room's digest depends on its state, never on the order the store listed it in."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from shared.store import digest_of

pytestmark = pytest.mark.unit


def answer(**overrides: Any) -> str:
    """A room_digest.lua answer: two people, an admission, two addresses."""
    state: dict[str, Any] = {
        "config": {"target_url": "http://shop.example/", "max_active": "5", "version": "2"},
        "counters": {"arrival": 17, "event_seq": 9, "used_units": 1},
        "line": ["p2"],
        "admitted": ["p1", "1700000000000"],
        "active": [],
        "people": [
            ["p1", "admitted", 16, 1, 0, "ip-a", "", "", 1700000000000],
            ["p2", "waiting", 17, 1, 0, "ip-b", "", "", 0],
        ],
        "ips": ["ip-a", "1", "ip-b", "1"],
    }
    state.update(overrides)
    return msgspec.json.encode(state).decode()


def test_order_of_people_addresses_and_keys_does_not_matter() -> None:
    base = digest_of(answer())
    shuffled = answer(
        people=[
            ["p2", "waiting", 17, 1, 0, "ip-b", "", "", 0],
            ["p1", "admitted", 16, 1, 0, "ip-a", "", "", 1700000000000],
        ],
        ips=["ip-b", "1", "ip-a", "1"],
        config={"version": "2", "max_active": "5", "target_url": "http://shop.example/"},
    )
    assert digest_of(shuffled) == base


def test_an_empty_list_written_as_an_object_is_still_empty() -> None:
    # cjson encodes an empty Lua table as {}
    assert digest_of(answer(active={}, ips={})) == digest_of(answer(active=[], ips=[]))


@pytest.mark.parametrize(
    "change",
    [
        {"line": ["p3"]},
        {"counters": {"arrival": 18, "event_seq": 9, "used_units": 1}},
        {"config": {"target_url": "http://shop.example/", "max_active": "6", "version": "2"}},
        {"ips": ["ip-a", "2", "ip-b", "1"]},
        {"admitted": ["p1", "1700000000001"]},
    ],
)
def test_any_change_of_state_changes_the_digest(change: dict[str, Any]) -> None:
    assert digest_of(answer(**change)) != digest_of(answer())


def test_the_line_order_is_part_of_the_state() -> None:
    one = answer(line=["p2", "p3"])
    other = answer(line=["p3", "p2"])
    assert digest_of(one) != digest_of(other)
