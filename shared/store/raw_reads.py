"""Plain reads in one MULTI/EXEC, their answers taken whole and left raw.

A read of a whole room (its snapshot, its line) is atomic either as one Lua script or as
plain commands in one transaction; the transaction holds the store a fraction as long,
because the script builds a table of every record and encodes it while the store serves no
one else. The answer can be a hundred megabytes: it is read on a connection of its own
(``ScriptLane.answer_whole``) and kept as bytes, ending with the answer to an ``ECHO`` of
a random marker, and the caller parses what it needs, where it can afford to.
"""

from __future__ import annotations

import secrets

from redis.exceptions import InvalidResponse, ResponseError

from shared.store.lane import ScriptLane, bulks, read_reply


def command(*words: str | int) -> bytes:
    """One command as the protocol frames it."""
    return b"*%d\r\n%s" % (len(words), bulks(words))


def transaction_frame(commands: list[bytes], marker: str) -> bytes:
    """``commands`` in one MULTI/EXEC, then ``ECHO marker`` (the end of the answer)."""
    return b"".join([command("MULTI"), *commands, command("EXEC"), command("ECHO", marker)])


def echo_answer(marker: str) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(marker), marker.encode())


async def read_transaction(
    lane: ScriptLane, commands: list[bytes], *, within: float
) -> tuple[bytearray, int, int]:
    """The raw answer to ``commands`` in one transaction, with the positions where the
    transaction's answers start (MULTI's) and end (the marker's answer). The handshake's
    errors (a refused AUTH or SELECT) are raised."""
    marker = secrets.token_hex(16)
    echo = echo_answer(marker)
    raw = await lane.answer_whole(transaction_frame(commands, marker), echo, within=within)
    pos = 0
    for _ in lane.handshake_commands():
        value, pos = read_reply(raw, pos)
        if isinstance(value, Exception):
            raise value
    return raw, pos, len(raw) - len(echo)


def exec_answers(raw: bytes | bytearray, pos: int, inside: int) -> int:
    """Past MULTI's answer and the ``inside`` QUEUED ones to the start of EXEC's first
    answer. An error in their place (a command refused), or EXEC's (EXECABORT), is raised;
    so is an EXEC answering another number of commands."""
    for _ in range(1 + inside):
        value, pos = read_reply(raw, pos)
        if isinstance(value, Exception):
            raise value
    if raw[pos] != 0x2A:  # not an array: EXEC's error
        value, _ = read_reply(raw, pos)
        raise value if isinstance(value, Exception) else InvalidResponse(repr(value))
    end = raw.index(b"\r\n", pos)
    if int(raw[pos + 1 : end]) != inside:
        raise InvalidResponse("the store's transaction answered another number of commands")
    return end + 2


def strings(buf: bytes | bytearray, pos: int) -> tuple[list[str], int]:
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
            raise InvalidResponse(f"unexpected answer type {chr(buf[pos])!r} in a whole read")
        end = find(b"\r\n", pos)
        start = end + 2
        stop = start + int(buf[pos + 1 : end])
        append(buf[start:stop].decode())
        pos = stop + 2
    return out, pos
