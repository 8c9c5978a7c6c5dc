"""``/v1/session``: the API of the protected site (access tokens)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from gateway.caller import bearer_token
from gateway.errors import ACCESS_TOKEN_ERRORS, BODY_ERRORS, STORE_ERRORS, error_answers
from gateway.routes.common import BEARER
from gateway.routes.openapi import OptionalBody
from gateway.schemas import NO_FIELDS, NoFields, SessionResponse, VerifyBody, VerifyResponse
from gateway.site import Site
from shared import errors

SESSION_ERRORS = (
    *BODY_ERRORS,
    *ACCESS_TOKEN_ERRORS,
    *STORE_ERRORS,
    errors.RoomNotFound,
    errors.PositionNotFound,
)


@post(
    "/verify",
    status_code=200,
    summary="Is this access still good",
    responses=error_answers(*BODY_ERRORS, *ACCESS_TOKEN_ERRORS, errors.WrongRoom),
)
async def verify(data: JSONBody[VerifyBody], site: NamedDependency[Site]) -> VerifyResponse:
    """Body ``{"token": "...", "room": "..."}``. A forged, expired or queue-typed token is
    refused (401); a token of another room than ``room`` gets 403. A good token whose
    visit has ended answers ``active: false``. While the data store is away the answer
    comes from the token alone (``checked: "offline"``)."""
    return await site.verify(data)


@post(
    "/heartbeat",
    operation_class=OptionalBody,
    status_code=200,
    summary="Keep a session alive",
    security=BEARER,
    responses=error_answers(
        *SESSION_ERRORS, errors.AdmissionExpired, errors.SessionEnded, errors.NotAdmitted
    ),
)
async def session_heartbeat(
    site: NamedDependency[Site],
    request: Request[Any, Any, Any],
    data: JSONBody[NoFields] = NO_FIELDS,
) -> SessionResponse:
    """Bearer access token. Claims the admission if it was not yet claimed, else moves the
    session's end to session_ttl from now; answers a refreshed ``access_token``."""
    return await site.heartbeat(bearer_token(request))


@post(
    "/complete",
    operation_class=OptionalBody,
    status_code=200,
    summary="The visit is over",
    security=BEARER,
    responses=error_answers(*SESSION_ERRORS, errors.NotAdmitted),
)
async def complete(
    site: NamedDependency[Site],
    request: Request[Any, Any, Any],
    data: JSONBody[NoFields] = NO_FIELDS,
) -> SessionResponse:
    """Bearer access token. Ends the visit and frees its units at once."""
    return await site.complete(bearer_token(request))


site_router = Router(
    path="/v1/session",
    route_handlers=[verify, session_heartbeat, complete],
    tags=["protected site"],
)
