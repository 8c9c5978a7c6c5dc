"""Every error leaves the gateway as ``{"error": {"code", "message", "retry_after"}}``.

One place maps domain errors, Litestar's own HTTP errors (a body that is not JSON, one
that does not fit its type, one too large) and anything unexpected to that shape, with
``Retry-After`` where waiting helps; and one function declares a route's error answers
in the OpenAPI document from the same error classes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from gateway.schemas import ErrorBody
from shared import errors

log = structlog.get_logger("gateway")

_HTTP_CODES: dict[int, type[errors.WaitroomError]] = {
    400: errors.InvalidBody,
    404: errors.NotFoundRoute,
    405: errors.MethodNotAllowed,
    413: errors.BodyTooLarge,
    429: errors.RateLimited,
}


def error_answer(exc: errors.WaitroomError) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers a domain error is answered with."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.detail}
    headers: dict[str, str] = {}
    if exc.retry is not None:
        body["retry_after"] = exc.retry
        headers["Retry-After"] = str(exc.retry)
    return {"error": body}, headers


def error_response(exc: errors.WaitroomError) -> Response[dict[str, Any]]:
    body, headers = error_answer(exc)
    return Response(body, status_code=exc.status, headers=headers)


def on_waitroom_error(_: Request[Any, Any, Any], exc: errors.WaitroomError) -> Response[Any]:
    return error_response(exc)


def on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc.__cause__, SerializationException):
        return error_response(errors.MalformedJson())
    if isinstance(exc, ValidationException):
        return error_response(errors.InvalidBody(_validation_message(exc)))
    cls = _HTTP_CODES.get(exc.status_code)
    if cls is not None:
        return error_response(cls())
    return Response(
        {"error": {"code": f"http_{exc.status_code}", "message": str(exc.detail)}},
        status_code=exc.status_code,
    )


def _validation_message(exc: ValidationException) -> str:
    """The first problem Litestar found, as ``where: what``."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    for problem in extra:
        if isinstance(problem, dict) and problem.get("message"):
            where = str(problem.get("key") or "")
            return f"{where}: {problem['message']}" if where else str(problem["message"])
    return errors.InvalidBody.message


def unexpected_answer(exc: Exception) -> dict[str, Any]:
    """The body a bug is answered with (status 500), once it is logged."""
    log.error("unhandled_error", error=repr(exc), exc_info=exc)
    return {"error": {"code": "internal", "message": "Something went wrong on our side."}}


def on_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return Response(unexpected_answer(exc), status_code=500)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    errors.WaitroomError: on_waitroom_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}


def error_answers(*raised: type[errors.WaitroomError]) -> dict[int, ResponseSpec]:
    """The OpenAPI ``responses`` of a route that may answer these errors: one entry per
    status, naming every code it may carry."""
    by_status: dict[int, list[type[errors.WaitroomError]]] = defaultdict(list)
    for cls in (*raised, errors.RateLimited):
        if cls not in by_status[cls.status]:
            by_status[cls.status].append(cls)
    return {
        status: ResponseSpec(
            data_container=ErrorBody,
            description="; ".join(f"`{c.code}`: {c.message}" for c in classes),
        )
        for status, classes in sorted(by_status.items())
    }


# the errors routes share, grouped by cause, for error_answers()
BODY_ERRORS = (errors.MalformedJson, errors.InvalidBody, errors.BodyTooLarge)
ROOM_ERRORS = (errors.InvalidRoomId, errors.RoomNotFound)
STORE_ERRORS = (errors.StoreUnavailable, errors.RoomRecovering)
QUEUE_TOKEN_ERRORS = (
    errors.MissingToken,
    errors.TokenInvalid,
    errors.TokenExpired,
    errors.WrongTokenType,
    errors.WrongRoom,
    errors.TokenBindingMismatch,
)
ACCESS_TOKEN_ERRORS = (
    errors.MissingToken,
    errors.TokenInvalid,
    errors.TokenExpired,
    errors.WrongTokenType,
    errors.WrongRoom,
)
