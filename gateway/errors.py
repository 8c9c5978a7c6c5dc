"""Every error leaves the gateway as ``{"error": {"code", "message", "retry_after"}}``.

One place maps domain errors, Litestar's own HTTP errors and anything unexpected to that
shape, with ``Retry-After`` where waiting helps.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from shared import errors

log = structlog.get_logger("gateway")

_HTTP_CODES = {
    400: errors.InvalidBody,
    404: errors.NotFoundRoute,
    405: errors.MethodNotAllowed,
    413: errors.BodyTooLarge,
    429: errors.RateLimited,
}


def error_response(exc: errors.WaitroomError) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"code": exc.code, "message": exc.detail}
    headers: dict[str, str] = {}
    if exc.retry is not None:
        body["retry_after"] = exc.retry
        headers["Retry-After"] = str(exc.retry)
    return Response({"error": body}, status_code=exc.status, headers=headers)


def on_waitroom_error(_: Request[Any, Any, Any], exc: errors.WaitroomError) -> Response[Any]:
    return error_response(exc)


def on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    cls = _HTTP_CODES.get(exc.status_code)
    if cls is not None:
        return error_response(cls())
    err = errors.WaitroomError(str(exc.detail))
    return Response(
        {"error": {"code": f"http_{exc.status_code}", "message": err.detail}},
        status_code=exc.status_code,
    )


def on_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled_error", error=repr(exc), exc_info=exc)
    return Response(
        {"error": {"code": "internal", "message": "Something went wrong on our side."}},
        status_code=500,
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    errors.WaitroomError: on_waitroom_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
