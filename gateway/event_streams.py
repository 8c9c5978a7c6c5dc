"""``GET /v1/rooms/{room}/events`` served before the framework.

An open event stream lives for minutes to hours, and whatever its request set up lives
with it: through Litestar that is the request object, its parsed headers and query, the
response object and a coroutine frame per middleware layer, several KiB per stream, for
work done once. Here the stream is opened with the same checks the route makes (the
token from ``Authorization`` or ``?token=``, verified for this room, the stream limits)
and written by the hub in the request's own task (see LiveHub.write); an error is
answered with the same JSON, status and headers, the request id, metrics and log line
as the route's. A call this layer does not take on (another path or method, a room id
that is not valid, no token, an address that cannot be read) goes to Litestar unchanged,
which answers it as before; the route stays, for the API description and as that path.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import structlog
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.utils.scope.state import CONNECTION_STATE_KEY

from gateway.caller import Caller, optional_bearer
from gateway.live import Watcher
from gateway.raw_calls import room_of, send_error
from gateway.request_log import request_done, request_id
from gateway.services import Services
from shared.errors import WaitroomError

log = structlog.get_logger("gateway")

SUFFIX = "/events"
ROUTE = "/v1/rooms/{room}/events"
"""The route template Litestar reports for it (the metrics' ``route`` label)."""
STREAM_HEADERS = (
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"content-type", b"text/event-stream; charset=utf-8"),
)


def event_streams(app: ASGIApp, access_log: str) -> ASGIApp:
    """``app`` (Litestar's handler) with event streams opened and written first."""

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        room = room_of(scope, "GET", SUFFIX) if scope["type"] == ScopeType.HTTP else None
        if room is not None and await _serve(scope, receive, send, room, access_log):
            return
        await app(scope, receive, send)

    return handler


async def _serve(scope: Scope, receive: Receive, send: Send, room: str, access_log: str) -> bool:
    """Open and write the stream, or answer its error; False (nothing sent) when the
    call must go the full way."""
    services: Services | None = getattr(scope["app"].state, "services", None)
    if services is None:
        return False
    started = time.perf_counter()
    rid = request_id(scope)
    bound = structlog.contextvars.bind_contextvars(request_id=rid)
    try:
        watcher = await _open(scope, services, room)
    except WaitroomError as exc:
        await send_error(send, exc, rid)
        request_done(scope, ROUTE, exc.status, time.perf_counter() - started, access_log)
        return True
    except Exception:  # nothing sent yet: the full way answers, and handles it as it does
        log.exception("event_stream_open_failed", room=room)
        return False
    finally:
        # the request id stays out of the stream's long life (a context copy per stream)
        structlog.contextvars.reset_contextvars(**bound)
    if watcher is None:
        return False
    # what the stream's long life does not read again: the token in the query (about 700
    # bytes) and the request's headers (a browser's are a kilobyte or more; the list is
    # the connection's too, so it is emptied, not replaced)
    scope["query_string"] = b""
    headers = scope["headers"]
    if isinstance(headers, list):  # (as uvicorn makes it)
        headers.clear()
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*STREAM_HEADERS, (b"x-request-id", rid.encode("ascii"))],
            }
        )
        await services.live.write(watcher, send, receive)
    finally:
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        request_done(scope, ROUTE, 200, time.perf_counter() - started, access_log)
        structlog.contextvars.reset_contextvars(**bound)
    return True


async def _open(scope: Scope, services: Services, room: str) -> Watcher | None:
    """The checks of the route, then the new stream's watcher; None when this call is not
    one to take on here (Litestar answers it). What is set up for the checks is dropped
    before the stream starts (nothing here lives as long as it)."""
    connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
    try:
        token = optional_bearer(connection) or _query_token(scope)
        if not token:
            return None  # the route answers missing_token
        try:
            caller = Caller(connection, services.settings)
        except WaitroomError:
            return None  # the route answers it
        last_event_id = connection.headers.get("last-event-id", "")
        start = await services.people.follow(room, caller, token)
        return await services.live.open(room, start, caller, last_event_id)
    finally:
        scope.get("state", {}).pop(CONNECTION_STATE_KEY, None)  # the parsed headers


def _query_token(scope: Scope) -> str:
    """``?token=`` (the first one), as the route reads it."""
    query: bytes = scope.get("query_string", b"")
    if b"token=" not in query:
        return ""
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "token":
            return value
    return ""
