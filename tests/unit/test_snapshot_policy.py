"""When the relay snapshots a room: a snapshot costs the store in proportion to the room,
so a big room is snapshotted after half as many events as it holds people, not every
10,000."""

from __future__ import annotations

import pytest

from shared.relay import SnapshotPolicy

pytestmark = pytest.mark.unit

POLICY = SnapshotPolicy(every_events=10_000, every_seconds=300.0)


def test_a_small_room_is_due_after_every_events_or_after_a_while() -> None:
    assert not POLICY.due(9_999, 10.0, people=500)
    assert POLICY.due(10_000, 10.0, people=500)
    assert POLICY.due(1, 300.0, people=500)
    assert not POLICY.due(0, 3_000.0, people=500)  # nothing changed


def test_a_room_of_a_million_waits_for_half_a_million_events() -> None:
    assert not POLICY.due(10_000, 10.0, people=1_000_000)
    assert not POLICY.due(499_999, 10.0, people=1_000_000)
    assert POLICY.due(500_000, 10.0, people=1_000_000)
    # a room that only grew: due when it has doubled since its last snapshot
    assert not POLICY.due(99_990, 10.0, people=100_000 + 99_990)
    assert POLICY.due(100_000, 10.0, people=100_000 + 100_000)


def test_by_time_every_room_that_changed_is_due_whatever_its_size() -> None:
    """The stream's retention relies on a snapshot younger than every_seconds."""
    assert POLICY.due(1, 300.0, people=1_000_000)
    assert not POLICY.due(0, 3_600.0, people=1_000_000)


def test_before_the_people_are_counted_the_question_is_whether_it_may_be_due() -> None:
    assert not POLICY.due(9_999, 10.0)  # then nobody needs counting
    assert POLICY.due(10_000, 10.0)
    assert POLICY.due(1, 300.0)
