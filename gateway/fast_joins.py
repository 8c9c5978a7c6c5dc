"""Joins (``POST /v1/rooms/{room}/enqueue``) answered before the framework.

In the first minute of a sale nearly every request is a join, and the framework's own work
for one (request object, dependency resolution, the signature model, the response object)
costs as much as everything a join needs besides its signature. So a join is answered
here, by the same service call (``People.join``), with the same body, status, headers,
errors, request id, metrics and log line as the route: the body is read within the same
deadline and size limit, decoded as strictly, and every error takes the same shape.
Anything that is not a plain join of a valid room id goes to Litestar unchanged.

The gateway's connection protocol (lean_connections.py) goes further: a join that is the
only request being answered on its connection is taken as it is parsed, its body gathered
by the parser, and answered by ``join_at_once`` from one task of its own, written in one
go: no request cycle, no ASGI messages, no framework (``answered_at_once`` counts them).
A join queued behind another request on its connection comes here through ASGI.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.bodies import decode_strict
from gateway.caller import Caller, bearer_of
from gateway.errors import unexpected_answer
from gateway.lean_connections import WriteAnswer
from gateway.raw_calls import (
    Answer,
    error_json,
    first_headers,
    json_answer,
    room_of,
    send_answer,
)
from gateway.request_log import request_done, request_id
from gateway.schemas import NO_ENQUEUE_FIELDS, EnqueueBody
from gateway.services import Services
from gateway.slow_clients import read_body_in_time, refusal, refuse
from shared.errors import WaitroomError

log = structlog.get_logger("gateway")

SUFFIX = "/enqueue"
ROUTE = "/v1/rooms/{room}/enqueue"
"""The route template Litestar reports for it (the metrics' ``route`` label)."""


class FastJoins:
    """``app`` (Litestar's handler) with joins answered first; ``answered`` counts them,
    ``answered_at_once`` those of them the connection protocol took (figures for tests
    and the benchmark). ``litestar`` is the app whose state holds the services."""

    def __init__(self, app: ASGIApp, access_log: str, litestar: Any) -> None:
        self.app = app
        self.access_log = access_log
        self._litestar = litestar
        self._state: State = litestar.state
        self.answered = 0
        self.answered_at_once = 0

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

    # for the connection protocol (lean_connections.JoinsAtOnce) --------------------
    def room_at_once(self, scope: Scope) -> str | None:
        """The room, if this request is a join to take at once (the app is serving)."""
        room = room_of(scope, "POST", SUFFIX)
        if room is None or getattr(self._state, "services", None) is None:
            return None
        return room

    @property
    def body_limits(self) -> tuple[int, float]:
        """The largest body a join may have, in bytes, and the seconds it may take."""
        settings = self._services.settings
        return settings.max_body_bytes, settings.body_timeout

    @property
    def _services(self) -> Services:
        services: Services = self._state.services
        return services

    async def join_at_once(self, scope: Scope, room: str, raw: bytes, write: WriteAnswer) -> None:
        """Answer a join whose whole body ``raw`` the parser gathered, with ``write``."""
        started = time.perf_counter()
        scope["app"] = self._litestar  # as Litestar sets it (the caller and the log read it)
        rid = request_id(scope)
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        status = 500
        try:
            self.answered += 1
            self.answered_at_once += 1
            answer = await _answer(scope, room, raw, self._services, rid)
            status = answer[0]
            write(*answer)
        finally:
            request_done(scope, ROUTE, status, time.perf_counter() - started, self.access_log)
            structlog.contextvars.reset_contextvars(**bound)

    def refuse_at_once(
        self, scope: Scope, exc: WaitroomError, write: WriteAnswer, waited: float
    ) -> None:
        """Refuse a join whose body came too slowly (after ``waited`` seconds), as
        ``_join`` does."""
        scope["app"] = self._litestar
        rid = request_id(scope)
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            write(*refusal(exc, ((b"x-request-id", rid.encode("ascii")),)))
        finally:
            request_done(scope, ROUTE, exc.status, waited, self.access_log)
            structlog.contextvars.reset_contextvars(**bound)


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
        answer = await _answer(scope, room, raw, services, rid)
        status = answer[0]
        await send_answer(send, answer)
    finally:
        request_done(scope, ROUTE, status, time.perf_counter() - started, access_log)
        structlog.contextvars.reset_contextvars(**bound)


async def _answer(scope: Scope, room: str, raw: bytes, services: Services, rid: str) -> Answer:
    """The answer to a join with the body ``raw``: the place, or the error."""
    try:
        body: EnqueueBody = decode_strict(raw, EnqueueBody) if raw else NO_ENQUEUE_FIELDS
        found = first_headers(scope, b"authorization", b"idempotency-key")
        bearer = bearer_of(found.get(b"authorization", ""))
        idempotency_key = found.get(b"idempotency-key") or None
        caller = Caller(ASGIConnection(scope), services.settings)
        joined = await services.people.join(
            room, caller, body, bearer=bearer, idempotency_key=idempotency_key
        )
    except WaitroomError as exc:
        return error_json(exc, rid)
    except Exception as exc:
        return json_answer(500, unexpected_answer(exc), rid)
    return json_answer(201 if joined.created else 200, joined.answer, rid)
