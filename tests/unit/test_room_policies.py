"""The room policy fields: their bounds, their stored form, and the invite signature."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from gateway.invites import InviteSigner
from gateway.schemas import EnqueueBody, InviteBody
from shared.errors import InvalidBody, InviteInvalid
from shared.room import FIELD_DEFAULTS, RoomUpdate, checked_update, from_stored

pytestmark = pytest.mark.unit


def update(raw: str) -> RoomUpdate:
    return msgspec.json.decode(raw, type=RoomUpdate)


def test_policy_fields_have_their_defaults() -> None:
    assert FIELD_DEFAULTS["lanes"] == {}
    assert FIELD_DEFAULTS["admission_policy"] == "strict"
    assert FIELD_DEFAULTS["queueing_method"] == "fifo"
    assert FIELD_DEFAULTS["max_skips"] == 3
    assert (FIELD_DEFAULTS["opens_at"], FIELD_DEFAULTS["closes_at"]) == (0, 0)


def test_times_are_kept_as_epoch_ms_and_come_back_as_times() -> None:
    given = checked_update(update('{"opens_at": "2030-05-01T09:00:00+02:00", "closes_at": null}'))
    seven_utc = datetime(2030, 5, 1, 7, 0, tzinfo=UTC)
    assert given == {"opens_at": int(seven_utc.timestamp()) * 1000, "closes_at": 0}
    stored = str(given["opens_at"])
    config = from_stored(
        {"target_url": "https://shop.example/", "opens_at": stored, "closes_at": "0"}
    )
    assert config.opens_at == seven_utc
    assert config.closes_at is None
    assert msgspec.json.encode(config.opens_at) == b'"2030-05-01T07:00:00Z"'


def test_a_time_needs_its_offset_and_a_sane_year() -> None:
    with pytest.raises(msgspec.ValidationError):
        update('{"opens_at": "2030-05-01T09:00:00"}')  # which zone?
    with pytest.raises(msgspec.ValidationError, match="between the years"):
        update('{"closes_at": "0001-01-01T00:00:00Z"}')
    with pytest.raises(msgspec.ValidationError, match="between the years"):
        msgspec.json.decode(b'{"expires_at": "1970-01-01T00:00:00Z"}', type=InviteBody)


def test_lanes_are_named_units_and_any_is_no_lane() -> None:
    lanes = checked_update(update('{"lanes": {"counter": 8, "table": 24}}'))["lanes"]
    assert lanes == {"counter": 8, "table": 24}
    assert from_stored({"target_url": "https://x.example/", "lanes": '{"bar": 3}'}).lanes == {
        "bar": 3
    }
    for bad in ('{"any": 2}', '{"Big Table": 2}', '{"t": 0}', '{"t": "2"}'):
        with pytest.raises(msgspec.ValidationError):
            update(f'{{"lanes": {bad}}}')
    with pytest.raises(msgspec.ValidationError):
        RoomUpdate(lanes={"any": 3})
    with pytest.raises(InvalidBody):  # bounds an update built in Python has skipped
        checked_update(RoomUpdate(lanes={"t": 0}))
    too_many = {f"l{n}": 1 for n in range(17)}
    with pytest.raises(msgspec.ValidationError):
        update(msgspec.json.encode({"lanes": too_many}).decode())


def test_policies_take_only_their_words() -> None:
    assert checked_update(update('{"admission_policy": "best_fit", "max_skips": 0}')) == {
        "admission_policy": "best_fit",
        "max_skips": 0,
    }
    for bad in (
        '{"admission_policy": "greedy"}',
        '{"queueing_method": "lifo"}',
        '{"max_skips": -1}',
        '{"max_skips": 1001}',
    ):
        with pytest.raises(msgspec.ValidationError):
            update(bad)


def test_a_join_names_a_lane_or_any() -> None:
    assert msgspec.json.decode(b'{"lane": "any"}', type=EnqueueBody).lane == "any"
    assert msgspec.json.decode(b"{}", type=EnqueueBody).lane == ""
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"lane": "Table 4"}', type=EnqueueBody)


def test_an_invite_is_signed_for_its_room() -> None:
    signer = InviteSigner("deployment salt")
    invite_id = signer.new_id()
    invite = signer.sign("gala", invite_id)
    assert signer.check("gala", invite) == invite_id
    for forged in (
        signer.sign("other-room", invite_id),  # another room's
        InviteSigner("another deployment").sign("gala", invite_id),  # another deployment's
        invite[:-1] + ("A" if invite[-1] != "A" else "B"),  # tampered
        invite_id,  # no mac at all
        "../../etc.passwd",
        "",
    ):
        with pytest.raises(InviteInvalid):
            signer.check("gala", forged)
