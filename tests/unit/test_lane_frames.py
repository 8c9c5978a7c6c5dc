"""The script lane's commands are the bytes redis-py would send for the same call."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from shared.store.lane import Arg, bulk, bulks, evalsha_frame

pytestmark = pytest.mark.unit

ARGS: tuple[Arg, ...] = (
    "room-1",
    "é ünïcode ☃",
    "",
    0,
    -7,
    2**70,
    3.25,
    -0.5,
    b"\x00raw\r\n",
    "with\r\nnewline",
)


def test_an_evalsha_frame_is_what_redis_py_sends() -> None:
    keys = ("{room-1}:a", "{room-1}:b")
    packed = b"".join(bulk(key) for key in keys)
    sent = b"".join(Connection().pack_command("EVALSHA", "f" * 40, len(keys), *keys, *ARGS))
    assert evalsha_frame("f" * 40, packed, len(keys), ARGS) == sent


def test_bulks_is_bulk_of_each() -> None:
    assert bulks(ARGS) == b"".join(bulk(arg) for arg in ARGS)
    assert bulks(()) == b""


@pytest.mark.parametrize("value", [True, False, None, [1], {"a": 1}])
def test_what_redis_py_refuses_is_refused(value: object) -> None:
    with pytest.raises(DataError):
        bulks(("fine", value))  # type: ignore[arg-type]
