"""Each request's id, summary log line and metrics observation.

A request keeps the id a proxy or client sent in ``X-Request-ID`` when it is short and
plain (so a log line cannot be forged or bloated through it); otherwise it gets a new one.
The id is bound to structlog's context variables while the request runs, so every line
logged for it carries ``request_id``, and it is sent back in ``X-Request-ID``.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.services import Services

log = structlog.get_logger("gateway")

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SLOW_SECONDS = 1.0
_SANE_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")


_PROCESS = secrets.token_hex(8)
_COUNTER = itertools.count()


def request_id(scope: Scope) -> str:
    """The id the request came with, if sane, else a new one (32 hex digits: this
    process's random prefix and a counter, unique without a random draw per request)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SANE_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return f"{_PROCESS}{next(_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def access_log_middleware(mode: str = "all") -> Callable[[ASGIApp], ASGIApp]:
    """A request id, a metrics observation and (``mode``: all, errors or off) a summary
    line per request. A JSON log line costs about as much as the rest of a status call,
    so by default only the lines worth reading are written: errors and slow requests."""
    return lambda app: _access_log(app, mode)


def _access_log(app: ASGIApp, mode: str) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        rid = request_id(scope)
        header = (b"x-request-id", rid.encode("ascii"))
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await app(scope, receive, send_wrapper)
        finally:
            route = str(scope.get("path_template") or "unmatched")
            request_done(scope, route, status, time.perf_counter() - started, mode)
            structlog.contextvars.reset_contextvars(**bound)

    return middleware


def request_done(scope: Scope, route: str, status: int, elapsed: float, mode: str) -> None:
    """A request answered: its metrics observation and (``mode``) its summary line. The
    caller has bound ``request_id`` to the log context."""
    svc: Services | None = getattr(scope["app"].state, "services", None)
    if svc is not None:
        svc.metrics.observe(route, status, elapsed)
    worth = mode == "all" or (mode == "errors" and (status >= 400 or elapsed > SLOW_SECONDS))
    if worth and scope["path"] not in QUIET_PATHS:
        log.info(
            "request",
            method=scope.get("method", ""),
            path=scope["path"],
            status=status,
            ms=round(elapsed * 1000, 2),
        )
