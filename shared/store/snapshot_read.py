"""A room's snapshot read with plain commands in one MULTI/EXEC, not with room_snapshot.lua.

Both are atomic. But the script builds a Lua table of every record and encodes them all
with cjson while the store serves no one else: 243-948 ms at 100,000 to 200,000 people on
this machine, where the same reads as plain commands held it 32-110 ms (3.8-4.9 s against
0.4 s at 1,000,000: ``python -m loadtest.bench_snapshots``). A snapshot every
``max(10,000, people / 2)`` events held every gateway's calls (every room's) that long:
most of a join's p99 at 80 % of the peak rate (148-191 ms; 23-27 ms after).

The answer is kept as the store sent it (``RAW_PREFIX``, a header naming the answers, then
the transaction's answers): the relay reads only its head (the config, for the refusals;
the counters, for the seq) and puts it on the stream as it is; parsing every record on the
relay's loop would have cost it ~0.5 us per record per snapshot. A restore turns it into
room_snapshot.lua's JSON (``snapshot_json``), which room_restore.lua takes, as it takes
the script's snapshots still on the stream (and refuses one it cannot read before it
changes anything; the version before this one emptied the room first: README, on rolling
back). The script stays for a store the lane cannot reach (a URL with settings of its
own).
"""

from __future__ import annotations

import msgspec
from redis.exceptions import InvalidResponse, RedisError

from shared import keys
from shared.errors import SnapshotTooNew, SnapshotUnreadable, WaitroomError, unreadable_room
from shared.events import SCHEMA_VERSION
from shared.store.lane import ScriptLane
from shared.store.raw_reads import command, exec_answers, read_transaction, strings

HASHES = ("people", "ips", "invites")
ZSETS = ("line", "admitted", "active", "ended", "pow", "prequeue")
ANSWERS = ("cfg", "stats", "time", *HASHES, *ZSETS)
"""What the transaction reads, in its order (the raw snapshot's header names them)."""
LEFT_OUT = frozenset(
    {"tokens", "tokens_ts", "tokens_short", "rate", "rate_ts", "rate_since", "fence", "recovering"}
)
"""The counters a snapshot leaves out, as room_snapshot.lua does: a restore starts or
keeps these."""
ORDER = ("people", "line", "admitted", "active", "ended", "pow", "ips", "prequeue", "invites")
"""The JSON's fields after v, seq, ts, cfg and stats, as room_snapshot.lua writes them."""
RAW_PREFIX = b"waitroom-raw-snapshot/1 "
"""What a snapshot kept as the store's answers starts with (JSON ones start with ``{``);
a header line follows (``RawHeader`` as JSON), then the answers."""
READ_TIMEOUT = 120.0
"""Seconds a snapshot's answer may take to come whole (a million people is ~100 MB);
it fails sooner when the store sends nothing for the lane's timeout."""


class RawHeader(msgspec.Struct, frozen=True):
    """What a raw snapshot holds, written when it is read: a restore maps the answers by
    these names, never by its own idea of their order, and refuses names it does not
    know (a snapshot from a later version)."""

    v: int
    """``SCHEMA_VERSION`` when the snapshot was read."""
    answers: tuple[str, ...]


_header = msgspec.json.Decoder(RawHeader)


def snapshot_reads(room: str) -> list[bytes]:
    """The commands reading the room in one transaction, in the order of ``ANSWERS``."""
    named = dict(zip(keys.ROOM_KEY_NAMES, keys.RoomKeys(room).all(), strict=False))
    reads = {
        "cfg": command("HGETALL", named["cfg"]),
        "stats": command("HGETALL", named["stats"]),
        "time": command("TIME"),
        **{name: command("HGETALL", named[name]) for name in HASHES},
        **{name: command("ZRANGE", named[name], 0, -1, "WITHSCORES") for name in ZSETS},
    }
    return [reads[name] for name in ANSWERS]


async def read_snapshot(lane: ScriptLane, room: str) -> bytes:
    """The room's whole state at its event counter, as ``RAW_PREFIX``, its header and the
    store's answers. ``RoomNotFound`` / ``RoomRecovering`` as room_snapshot.lua's
    answers; ``InvalidResponse`` for an answer that is not UTF-8 text (as the script's
    JSON would have been refused)."""
    raw, pos, end = await read_transaction(lane, snapshot_reads(room), within=READ_TIMEOUT)
    _head(raw, pos, len(ANSWERS))
    body = memoryview(raw)[pos:end]
    if not _utf8(body):
        raise InvalidResponse("a snapshot's answer is not UTF-8 text")
    header = msgspec.json.encode(RawHeader(SCHEMA_VERSION, ANSWERS))
    return b"".join((RAW_PREFIX, header, b"\n", body))  # (one copy of the answer)


def _utf8(body: memoryview) -> bool:
    try:
        str(body, "utf-8")  # (ids, scores and JSON: ASCII almost always, decoded fast)
    except UnicodeDecodeError:
        return False
    return True


def is_raw(state: bytes) -> bool:
    return state.startswith(RAW_PREFIX)


def snapshot_seq(state: bytes) -> int:
    """The room's event counter a snapshot (raw or JSON) holds the state at."""
    if is_raw(state):
        header, pos = _raw_header(state)
        _, stats, _ = _head(state, pos, len(header.answers))
        return int(_counters(stats)["event_seq"])
    return msgspec.json.decode(state, type=_Seq).seq


def snapshot_json(state: bytes) -> bytes:
    """room_snapshot.lua's JSON of a snapshot (a raw one converted, a JSON one as it is).
    ``SnapshotUnreadable`` for a raw one that is not whole, or not the store's answers;
    ``SnapshotTooNew`` for one of a later version (naming answers this one does not
    know)."""
    if not is_raw(state):
        return state
    try:
        return _converted(state)
    except SnapshotTooNew:
        raise
    except (IndexError, ValueError, msgspec.DecodeError, RedisError, WaitroomError) as exc:
        raise SnapshotUnreadable(f"unreadable raw snapshot: {exc!r}") from exc


def _raw_header(state: bytes) -> tuple[RawHeader, int]:
    end = state.index(b"\n", len(RAW_PREFIX))
    header = _header.decode(state[len(RAW_PREFIX) : end])
    names = header.answers
    if header.v > SCHEMA_VERSION or set(names) - set(ANSWERS):
        raise SnapshotTooNew(f"a raw snapshot of version {header.v}, of answers {names}")
    if names[:2] != ("cfg", "stats") or sorted(names) != sorted(ANSWERS):
        raise InvalidResponse(f"a raw snapshot of other answers: {names}")
    return header, end + 1


def _converted(state: bytes) -> bytes:
    header, pos = _raw_header(state)
    cfg_flat, stats_flat, pos = _head(state, pos, len(header.answers))
    read: dict[str, list[str]] = {}
    for name in header.answers[2:]:
        read[name], pos = strings(state, pos)
    if pos != len(state):
        raise InvalidResponse("a raw snapshot does not end where its answers do")
    seconds, micros = read["time"]
    kept = _counters(stats_flat)
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    json_state: dict[str, object] = {
        "v": header.v,
        "seq": int(kept["event_seq"]),
        "ts": now_ms / 1000,
        "cfg": dict(zip(cfg_flat[::2], cfg_flat[1::2], strict=True)),
        "stats": kept,
        # (cjson writes an empty table as an object: so does this)
        **{name: read[name] or {} for name in ORDER},
    }
    return msgspec.json.encode(json_state)


class _Seq(msgspec.Struct):
    seq: int


def _head(raw: bytes | bytearray, pos: int, inside: int) -> tuple[list[str], list[str], int]:
    """The config and the counters of the transaction's answers at ``pos`` (MULTI's,
    ``inside`` QUEUED, EXEC's array), and the position after them; the refusals
    room_snapshot.lua answers are raised."""
    cfg, pos = strings(raw, exec_answers(raw, pos, inside))
    stats, pos = strings(raw, pos)
    marked = "recovering" in stats[::2]
    if not cfg or marked:
        raise unreadable_room(marked)
    return cfg, stats, pos


def _counters(stats_flat: list[str]) -> dict[str, str]:
    """The counters a snapshot keeps, as room_snapshot.lua keeps them."""
    kept = {"event_seq": "0", "gone": "0"}
    for name, value in zip(stats_flat[::2], stats_flat[1::2], strict=True):
        if name not in LEFT_OUT:
            kept[name] = value
    return kept
