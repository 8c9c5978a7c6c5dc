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

The answer needs nothing to wait for, so the gateway's connection protocol
(lean_connections.py) asks for it as soon as the request's head is parsed, and writes it
itself: no request task, no ASGI messages. A request that arrives while an earlier one on
its connection is still being answered waits its turn as uvicorn queues it, and is then
answered here through ASGI (``MemoryAnswers.asgi``), as it is on any other server.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.serialization import encode_json
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.caller import Caller, bearer_of
from gateway.lean_connections import Header, WriteAnswer
from gateway.raw_calls import PREFIX, first_headers
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


class MemoryAnswers:
    """Status calls and heartbeats answered from this gateway's memory when it holds the
    whole answer. ``app`` is the Litestar app (its state holds the services once it runs)."""

    def __init__(self, app: Any, access_log: str) -> None:
        self._app = app
        self._state: State = app.state
        self._access_log = access_log
        self.through_asgi = 0
        """Calls answered through ASGI, not at once by the connection protocol (a figure
        for tests)."""

    def answer(self, scope: Scope, write: WriteAnswer) -> bool:
        """Answer the call if it is one of the two and memory holds the answer: ``write``
        gets it before this returns True. False: nothing written or counted, the call
        goes the full way."""
        call = _hot_call(scope)
        if call is None:
            return False
        room, heartbeat = call
        started = time.perf_counter()
        services: Services | None = getattr(self._state, "services", None)
        token = bearer_of(first_headers(scope, b"authorization").get(b"authorization", ""))
        if services is None or token is None:
            return False
        scope["app"] = self._app  # as Litestar sets it (the caller and the log read it)
        try:
            caller = Caller(ASGIConnection(scope), services.settings)
        except WaitroomError:
            return False
        try:
            answer = services.people.remembered(room, caller, token, heartbeat=heartbeat)
        except Exception:  # nothing written yet: the full way answers, and handles it
            log.exception("fast_answer_failed", room=room)
            return False
        if answer is None:
            return False
        rid = request_id(scope)
        body = encode_json(answer)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"x-request-id", rid.encode("ascii")),
        ]
        write(200, headers, body)
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            request_done(
                scope, ROUTES[heartbeat], 200, time.perf_counter() - started, self._access_log
            )
        finally:
            structlog.contextvars.reset_contextvars(**bound)
        return True

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """``app`` (Litestar's handler) with these calls answered first: for calls the
        connection protocol did not answer itself (queued behind another on their
        connection, or served by another server)."""

        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                written: list[tuple[int, list[Header], bytes]] = []
                if self.answer(scope, lambda *answer: written.append(answer)):
                    self.through_asgi += 1
                    status, headers, body = written[0]
                    await send(
                        {"type": "http.response.start", "status": status, "headers": headers}
                    )
                    await send({"type": "http.response.body", "body": body, "more_body": False})
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
