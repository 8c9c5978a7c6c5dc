"""The two calls people waiting make most, answered before the framework when this
gateway's memory holds the whole answer.

In the worst minute of a sale nearly every request is someone waiting who asks where they
stand (``GET /v1/rooms/{room}/status``) or says they are still there (``POST
/v1/rooms/{room}/heartbeat`` without a body). When the token was verified before and the
place is in this gateway's copy of the line (line_book.py), the answer needs no store and
no crypto; what is left is the framework's own work per request (request object,
dependencies, response), which costs more than the answer. So such a call is answered
here, with the same body, status and headers, the same request id, metrics and log line.
Every other call, and any of these that needs more (a token not seen before, a place not
in memory, an error, a limit used up, a token to re-sign), goes to Litestar unchanged:
``People.remembered`` decides, and does nothing when it declines.
"""

from __future__ import annotations

import time

import structlog
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.caller import Caller, bearer_of
from gateway.raw_calls import PREFIX, first_headers, send_json
from gateway.request_log import request_done, request_id
from gateway.services import Services
from shared import keys
from shared.errors import WaitroomError

log = structlog.get_logger("gateway")

CALLS = {("GET", "status"): False, ("POST", "heartbeat"): True}
"""(method, last path segment) -> whether it is a heartbeat."""
ROUTES = {
    False: "/v1/rooms/{room}/status",
    True: "/v1/rooms/{room}/heartbeat",
}
"""The route templates Litestar reports for them (the metrics' ``route`` label)."""


def fast_answers(app: ASGIApp, access_log: str) -> ASGIApp:
    """``app`` (Litestar's handler) with status and heartbeat answered from memory first."""

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        call = _hot_call(scope) if scope["type"] == ScopeType.HTTP else None
        if call is not None and await _answer(scope, send, *call, access_log):
            return
        await app(scope, receive, send)

    return handler


def _hot_call(scope: Scope) -> tuple[str, bool] | None:
    """(room, heartbeat?) for a status call or a heartbeat without a body, else None."""
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    room, _, last = path[len(PREFIX) :].partition("/")
    heartbeat = CALLS.get((str(scope.get("method")), last))
    if heartbeat is None or not keys.ROOM_ID_PATTERN.fullmatch(room):
        return None
    if heartbeat and _may_have_body(scope):
        return None  # the framework checks a body
    return room, heartbeat


def _may_have_body(scope: Scope) -> bool:
    """Whether the request may carry a body. Under HTTP/1 a body is announced by its
    headers; under HTTP/2 and 3 one may come without ``content-length``, so only an
    explicit zero says there is none."""
    length = None
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            length = value
    if length is None:
        return scope.get("http_version", "1.1") not in ("1.0", "1.1")
    return length != b"0"


async def _answer(scope: Scope, send: Send, room: str, heartbeat: bool, access_log: str) -> bool:
    """Answer the call from memory; False (nothing sent) when it must go the full way."""
    started = time.perf_counter()
    services: Services | None = getattr(scope["app"].state, "services", None)
    token = bearer_of(first_headers(scope, b"authorization").get(b"authorization", ""))
    if services is None or token is None:
        return False
    try:
        caller = Caller(ASGIConnection(scope), services.settings)
    except WaitroomError:
        return False
    try:
        answer = await services.people.remembered(room, caller, token, heartbeat=heartbeat)
    except Exception:  # nothing sent yet: the full way answers, and handles it as it does
        log.exception("fast_answer_failed", room=room)
        return False
    if answer is None:
        return False
    rid = request_id(scope)
    await send_json(send, 200, answer, rid)
    bound = structlog.contextvars.bind_contextvars(request_id=rid)
    try:
        request_done(scope, ROUTES[heartbeat], 200, time.perf_counter() - started, access_log)
    finally:
        structlog.contextvars.reset_contextvars(**bound)
    return True
