"""A room's snapshot read with plain commands in one MULTI/EXEC, not with room_snapshot.lua.

Both are atomic and give the same JSON. But the script builds a Lua table of every record
and encodes them all with cjson while the store serves no one else: 355-950 ms at 100,000
to 200,000 people on this machine (tools: snapprobe), where the same reads as plain
commands held it 45-110 ms. A snapshot every ``max(10,000, people / 2)`` events held
every gateway's calls (every room's) that long, which was most of a join's p99 at 80 % of
the peak rate. The relay now reads the answer raw on a connection of its own and builds
the JSON off its event loop; the script stays for a store the lane cannot reach (a URL
with settings of its own) and as the reference the tests hold this to.
"""

from __future__ import annotations

import asyncio
import secrets

import msgspec
from redis.exceptions import InvalidResponse, ResponseError

from shared import keys
from shared.errors import RoomNotFound, RoomRecovering
from shared.events import SCHEMA_VERSION
from shared.store.lane import ScriptLane, bulks, read_reply

HASHES = ("people", "ips", "invites")
ZSETS = ("line", "admitted", "active", "ended", "pow", "prequeue")
LEFT_OUT = frozenset(
    {"tokens", "tokens_ts", "tokens_short", "rate", "rate_ts", "rate_since", "fence", "recovering"}
)
"""The counters a snapshot leaves out, as room_snapshot.lua does: a restore starts or
keeps these."""
ORDER = ("people", "line", "admitted", "active", "ended", "pow", "ips", "prequeue", "invites")
"""The JSON's fields after v, seq, ts, cfg and stats, as room_snapshot.lua writes them."""
READ_TIMEOUT = 120.0
"""Seconds a snapshot's answer may take to come whole (a million people is ~100 MB)."""


def _command(*words: str | int) -> bytes:
    return b"*%d\r\n%s" % (len(words), bulks(words))


def snapshot_frame(room: str, marker: str) -> tuple[bytes, int]:
    """The commands reading the room in one transaction, then ``ECHO marker`` (the end
    of the answer); with the number of commands inside the transaction."""
    named = dict(zip(keys.ROOM_KEY_NAMES, keys.RoomKeys(room).all(), strict=False))
    inside = [
        _command("HGETALL", named["cfg"]),
        _command("HGETALL", named["stats"]),
        _command("TIME"),
        *(_command("HGETALL", named[name]) for name in HASHES),
        *(_command("ZRANGE", named[name], 0, -1, "WITHSCORES") for name in ZSETS),
    ]
    frame = b"".join([_command("MULTI"), *inside, _command("EXEC"), _command("ECHO", marker)])
    return frame, len(inside)


def echo_answer(marker: str) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(marker), marker.encode())


async def read_snapshot(lane: ScriptLane, room: str) -> bytes:
    """The room's whole state at its event counter, as room_snapshot.lua answers it.
    ``RoomNotFound`` / ``RoomRecovering`` as the script's answers."""
    marker = secrets.token_hex(16)
    frame, inside = snapshot_frame(room, marker)
    raw = await lane.answer_whole(frame, echo_answer(marker), within=READ_TIMEOUT)
    skip = len(lane.handshake_commands())
    return await asyncio.to_thread(snapshot_json, raw, skip, inside, marker)


def snapshot_json(raw: bytes, skip: int, inside: int, marker: str) -> bytes:
    """The snapshot's JSON from the raw answers: ``skip`` handshake answers, MULTI's,
    ``inside`` QUEUED, EXEC's array, the ECHO of ``marker``."""
    pos = 0
    for _ in range(skip + 1 + inside):
        value, pos = read_reply(raw, pos)
        if isinstance(value, Exception):
            raise value
    if raw[pos] != 0x2A:  # not an array: EXEC's error (EXECABORT...)
        value, _ = read_reply(raw, pos)
        raise value if isinstance(value, Exception) else InvalidResponse(repr(value))
    end = raw.index(b"\r\n", pos)
    if int(raw[pos + 1 : end]) != inside:
        raise InvalidResponse("the store's transaction answered another number of commands")
    pos = end + 2
    answers: list[list[str]] = []
    for _ in range(inside):
        strings, pos = _strings(raw, pos)
        answers.append(strings)
    if raw[pos:] != echo_answer(marker):
        raise InvalidResponse("the snapshot's answer does not end where it should")
    cfg_flat, stats_flat, (seconds, micros), *rest = answers
    stats = dict(zip(stats_flat[::2], stats_flat[1::2], strict=True))
    if not cfg_flat or "recovering" in stats:
        raise RoomRecovering() if "recovering" in stats else RoomNotFound()
    kept = {"event_seq": "0", "gone": "0"}
    kept.update((name, value) for name, value in stats.items() if name not in LEFT_OUT)
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    read = dict(zip((*HASHES, *ZSETS), rest, strict=True))
    state: dict[str, object] = {
        "v": SCHEMA_VERSION,
        "seq": int(kept["event_seq"]),
        "ts": now_ms / 1000,
        "cfg": dict(zip(cfg_flat[::2], cfg_flat[1::2], strict=True)),
        "stats": kept,
        # (cjson writes an empty table as an object: so does this)
        **{name: read[name] or {} for name in ORDER},
    }
    return msgspec.json.encode(state)


def _strings(buf: bytes, pos: int) -> tuple[list[str], int]:
    """An array of bulk strings (HGETALL, ZRANGE, TIME) at ``pos``, and the position after
    it: one pass with no call per item, ~3 x faster than ``read_reply`` on a room's
    people. An error answer (WRONGTYPE...) is raised."""
    kind = buf[pos]
    if kind != 0x2A:
        value, _ = read_reply(buf, pos)
        raise value if isinstance(value, Exception) else ResponseError(repr(value))
    end = buf.index(b"\r\n", pos)
    count = int(buf[pos + 1 : end])
    pos = end + 2
    out: list[str] = []
    append = out.append
    find = buf.find
    for _ in range(count):
        if buf[pos] != 0x24:
            raise InvalidResponse(f"unexpected answer type {chr(buf[pos])!r} in a snapshot")
        end = find(b"\r\n", pos)
        start = end + 2
        stop = start + int(buf[pos + 1 : end])
        append(buf[start:stop].decode())
        pos = stop + 2
    return out, pos
