"""A room's line for a gateway, read with plain commands in one MULTI/EXEC, not with
line_snapshot.lua, and parsed off the event loop.

Both reads are atomic. But the script encodes the whole line with cjson while the store
serves no one else: about 2 s at 1,000,000 people (loadtest/RESULTS.md), for every gateway
that loads the room (a pod scaled out in the middle of a sale, a gap in its events), with
every other call of every room waiting behind it; and the gateway then decoded the JSON
on its loop, answering no one meanwhile. Here the store runs the plain reads at C speed,
the answer comes whole on a connection of its own (raw_reads.py), and a worker thread
turns it into the script's ``LineSnapshot``. The script stays for a store the lane
cannot reach (a URL with settings of its own) and as the reference the tests hold this
read to.
"""

from __future__ import annotations

import asyncio

from redis.exceptions import InvalidResponse

from shared import keys
from shared.errors import unreadable_room
from shared.store.lane import ScriptLane
from shared.store.raw_reads import command, exec_answers, read_transaction, strings
from shared.store.views import LineSnapshot

READ_TIMEOUT = 60.0
"""Seconds the whole line may take to come (a million people is ~45 MB); it fails sooner
when the store sends nothing for the lane's timeout."""


def line_reads(room: str) -> list[bytes]:
    """What line_snapshot.lua reads: the config, the counters, the time, the line."""
    named = dict(zip(keys.ROOM_KEY_NAMES, keys.RoomKeys(room).all(), strict=False))
    return [
        command("HGETALL", named["cfg"]),
        command("HGETALL", named["stats"]),
        command("TIME"),
        command("ZRANGE", named["line"], 0, -1, "WITHSCORES"),
    ]


async def read_line(lane: ScriptLane, room: str) -> LineSnapshot:
    """The room's line at its event counter, as line_snapshot.lua answers it;
    ``RoomNotFound`` or ``RoomRecovering`` as it refuses (``unreadable_room``)."""
    reads = line_reads(room)
    raw, pos, end = await read_transaction(lane, reads, within=READ_TIMEOUT)
    return await asyncio.to_thread(parse_line, raw, pos, end, len(reads))


def parse_line(raw: bytes | bytearray, pos: int, end: int, inside: int) -> LineSnapshot:
    """The transaction's answers at ``pos`` as the script's snapshot (run it off the loop:
    a million people take about a second). ``InvalidResponse`` for answers that are not
    whole or lack what the script would have read."""
    try:
        return _parsed(raw, pos, end, inside)
    except (IndexError, KeyError, ValueError) as exc:
        raise InvalidResponse(f"unreadable line answer: {exc!r}") from exc


def _parsed(raw: bytes | bytearray, pos: int, end: int, inside: int) -> LineSnapshot:
    pos = exec_answers(raw, pos, inside)
    cfg_flat, pos = strings(raw, pos)
    stats_flat, pos = strings(raw, pos)
    if not cfg_flat:  # (a room being rebuilt may have no config yet)
        raise unreadable_room("recovering" in stats_flat[::2])
    (seconds, micros), pos = strings(raw, pos)
    line, pos = strings(raw, pos)
    if pos != end:
        raise InvalidResponse("a line's answer does not end where its reads do")
    cfg = dict(zip(cfg_flat[::2], cfg_flat[1::2], strict=True))
    stats = dict(zip(stats_flat[::2], stats_flat[1::2], strict=True))
    return LineSnapshot(
        event_seq=_whole(stats.get("event_seq", "0")),
        incarnation=cfg.get("inc", ""),
        status=cfg["status"],
        release_rate=float(cfg["release_rate"]),
        heartbeat_interval=_whole(cfg["heartbeat_interval"]),
        rate=float(stats.get("rate", "0")),
        rate_ts=_whole(stats.get("rate_ts", "0")),
        rate_since=_whole(stats.get("rate_since", "0")),
        gone_rate=float(stats.get("gone_rate", "0")),
        gone_rate_ts=_whole(stats.get("gone_rate_ts", "0")),
        auto_release=cfg.get("auto_release") == "true",
        pace=float(stats.get("pace", "-1")),
        now=int(seconds) * 1000 + int(micros) // 1000,
        line=line,
    )


def _whole(text: str) -> int:
    """A counter the scripts wrote, as a whole number (as ``tonumber`` and cjson gave it)."""
    try:
        return int(text)
    except ValueError:
        return int(float(text))
