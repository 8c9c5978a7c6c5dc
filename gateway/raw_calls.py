"""What the fast ways in (fast_answers.py, fast_joins.py, event_streams.py) share: they
read a call's room and headers from the ASGI scope and write JSON answers straight to
``send``, before the framework routes the call."""

from __future__ import annotations

from typing import Any

from litestar.serialization import encode_json
from litestar.types import Scope, Send

from gateway.errors import error_answer
from shared import keys
from shared.errors import WaitroomError

PREFIX = "/v1/rooms/"


def room_of(scope: Scope, method: str, suffix: str) -> str | None:
    """The room of a ``method`` call to ``/v1/rooms/{room}<suffix>`` whose room id is
    valid, else None (the framework then answers, invalid ids included)."""
    path: str = scope["path"]
    if scope.get("method") != method or not path.startswith(PREFIX) or not path.endswith(suffix):
        return None
    room = path[len(PREFIX) : -len(suffix)]
    return room if keys.ROOM_ID_PATTERN.fullmatch(room) else None


def first_headers(scope: Scope, *names: bytes) -> dict[bytes, str]:
    """The first value of each of these headers that came (names in lower case), as the
    framework's ``headers.get`` reads them, without building its headers object."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in names and name not in found:
            found[name] = value.decode("latin-1")
            if len(found) == len(names):
                break
    return found


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""A whole HTTP answer: status, headers, body."""


def json_answer(status: int, answer: Any, rid: str, extra: dict[str, str] | None = None) -> Answer:
    """A JSON answer with its request id (and ``extra`` headers)."""
    body = encode_json(answer)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()),
        (b"x-request-id", rid.encode("ascii")),
    ]
    return status, headers, body


def error_json(exc: WaitroomError, rid: str) -> Answer:
    """A domain error as the framework's exception handler answers it."""
    answer, extra = error_answer(exc)
    return json_answer(exc.status, answer, rid, extra)


async def send_answer(send: Send, answer: Answer) -> None:
    """``answer`` through ASGI, its body in one message."""
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, exc: WaitroomError, rid: str) -> None:
    """A domain error as the framework's exception handler answers it."""
    await send_answer(send, error_json(exc, rid))
