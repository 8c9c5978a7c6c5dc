"""Joins (``POST /v1/rooms/{room}/enqueue``) answered before the framework.

In the first minute of a sale nearly every request is a join, and the framework's own work
for one (request object, dependency resolution, the signature model, the response object)
costs as much as everything a join needs besides its signature. So a join is answered
here, by the same service call (``People.join``), with the same body, status, headers,
errors, request id, metrics and log line as the route: the body is read within the same
deadline and size limit, decoded as strictly, and every error takes the same shape.
Anything that is not a plain join of a valid room id goes to Litestar unchanged.
"""

from __future__ import annotations

import time

import structlog
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.bodies import decode_strict
from gateway.caller import Caller, bearer_of
from gateway.errors import unexpected_answer
from gateway.raw_calls import first_headers, room_of, send_error, send_json
from gateway.request_log import request_done, request_id
from gateway.schemas import NO_ENQUEUE_FIELDS, EnqueueBody
from gateway.services import Services
from gateway.slow_clients import read_body_in_time, refuse
from shared.errors import WaitroomError

log = structlog.get_logger("gateway")

SUFFIX = "/enqueue"
ROUTE = "/v1/rooms/{room}/enqueue"
"""The route template Litestar reports for it (the metrics' ``route`` label)."""


class FastJoins:
    """``app`` (Litestar's handler) with joins answered first; ``answered`` counts them
    (a figure for tests and the benchmark)."""

    def __init__(self, app: ASGIApp, access_log: str) -> None:
        self.app = app
        self.access_log = access_log
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        room = room_of(scope, "POST", SUFFIX) if scope["type"] == ScopeType.HTTP else None
        services: Services | None = (  # (the app's state looked up for joins only)
            None if room is None else getattr(scope["app"].state, "services", None)
        )
        if room is None or services is None:
            await self.app(scope, receive, send)
            return
        self.answered += 1
        await _join(scope, receive, send, room, services, self.access_log)


async def _join(
    scope: Scope, receive: Receive, send: Send, room: str, services: Services, access_log: str
) -> None:
    started = time.perf_counter()
    rid = request_id(scope)
    bound = structlog.contextvars.bind_contextvars(request_id=rid)
    status = 500
    try:
        settings = services.settings
        try:
            raw = await read_body_in_time(receive, settings.body_timeout, settings.max_body_bytes)
        except WaitroomError as exc:  # too slow, too large: as body_deadline_middleware
            status = exc.status
            await refuse(send, exc, ((b"x-request-id", rid.encode("ascii")),))
            return
        if raw is None:
            return  # the client went away
        try:
            body: EnqueueBody = decode_strict(raw, EnqueueBody) if raw else NO_ENQUEUE_FIELDS
            found = first_headers(scope, b"authorization", b"idempotency-key")
            bearer = bearer_of(found.get(b"authorization", ""))
            idempotency_key = found.get(b"idempotency-key") or None
            caller = Caller(ASGIConnection(scope), settings)
            joined = await services.people.join(
                room, caller, body, bearer=bearer, idempotency_key=idempotency_key
            )
        except WaitroomError as exc:
            status = exc.status
            await send_error(send, exc, rid)
            return
        except Exception as exc:
            await send_json(send, status, unexpected_answer(exc), rid)
            return
        status = 201 if joined.created else 200
        await send_json(send, status, joined.answer, rid)
    finally:
        request_done(scope, ROUTE, status, time.perf_counter() - started, access_log)
        structlog.contextvars.reset_contextvars(**bound)
