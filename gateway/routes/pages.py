"""The pages a browser sees: the waiting room, the answers of ``/go``, the operators' page."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from litestar.response import Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from gateway.caller import optional_bearer
from gateway.errors import QUEUE_TOKEN_ERRORS, ROOM_ERRORS, STORE_ERRORS, error_answers
from gateway.people import People
from gateway.routes.common import RoomParam, caller_of_request, valid_room_id
from shared import errors

BRAND = "#1f5f99"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' https: http:; style-src 'self'; "
        "script-src 'self'; worker-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; "
        # the brand colour is a custom property in a style attribute (see base.html)
        "style-src-attr 'unsafe-inline'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
DEFAULT_MESSAGE = (
    "Lots of people are trying to get in right now. We let everyone through in the order "
    "they arrived, at the pace the site can handle."
)
GO_PAGES = {
    "already_claimed": (
        "You've already gone in",
        "This admission was used already. If that was you in another tab or window, "
        "carry on there.",
    ),
    "session_ended": ("This visit has ended", "The admission was used and the visit is over."),
    "admission_expired": (
        "Your turn has passed",
        "The admission wasn't used in time, so it went to the next person. You can join "
        "the line again.",
    ),
    "not_admitted": (
        "It isn't your turn yet",
        "You're still in line. Go back to the waiting room page: it will take you in when "
        "it's your turn.",
    ),
}
TokenQuery = Annotated[
    str, QueryParameter(name="token", description="The queue token of the admitted place.")
]


def page(template: str, *, status: int = 200, **context: Any) -> Template:
    context.setdefault("brand", BRAND)
    return Template(
        template_name=template,
        context=context,
        status_code=status,
        media_type="text/html",
        headers=SECURITY_HEADERS,
    )


def message_page(
    title: str, text: str, *, link: str | None = None, link_text: str = "", status: int = 200
) -> Template:
    return page(
        "message.html", status=status, title=title, text=text, link=link, link_text=link_text
    )


def room_page_error(err: errors.WaitroomError) -> Template:
    if isinstance(err, errors.StoreUnavailable):
        return message_page(
            "One moment, please",
            "We can't reach the line right now. This page will work again shortly: try "
            "reloading in a few seconds. Your place is kept.",
            status=503,
        )
    return message_page("No such waiting room", "Check the address.", status=err.status)


@get(
    "/rooms/{room:str}",
    summary="The waiting-room page",
    responses={
        status: ResponseSpec(data_container=str, media_type="text/html", description=text)
        for status, text in (
            (400, "`invalid_room_id`: a page saying there is no such room."),
            (404, "`room_not_found`: a page saying there is no such room."),
            (503, "`store_unavailable`: a page asking to reload in a few seconds."),
        )
    },
)
async def room_html(
    room: RoomParam, people: NamedDependency[People], request: Request[Any, Any, Any]
) -> Template:
    """Joins or restores the person's place and follows it live; see the README."""
    caller = caller_of_request(request)
    try:
        room = valid_room_id(room)
        config = await people.room(room)
        initial = await people.first_paint(room, caller, request.cookies.get(cookie_name(room)))
    except (errors.InvalidRoomId, errors.RoomNotFound, errors.StoreUnavailable) as err:
        return room_page_error(err)
    return page(
        "room.html",
        room=room,
        initial=msgspec.json.encode(initial).decode(),
        title=config.title or "You're in line",
        message=config.message or DEFAULT_MESSAGE,
        logo_url=config.logo_url,
        brand=config.brand_color,
        pow_difficulty=config.pow_difficulty,
    )


def cookie_name(room: str) -> str:
    """The cookie the room page keeps its queue token in (see room.js)."""
    return f"waitroom_{room}"


def wants_html(request: Request[Any, Any, Any]) -> bool:
    return "text/html" in request.headers.get("accept", "")


def go_error_page(room: str, err: errors.WaitroomError) -> Template:
    title, text = GO_PAGES.get(
        err.code, ("This link doesn't work", "It may have expired. You can join the line again.")
    )
    return message_page(
        title, text, link=f"/rooms/{room}", link_text="Back to the waiting room", status=err.status
    )


@get(
    "/rooms/{room:str}/go",
    status_code=HTTP_303_SEE_OTHER,
    summary="Claim an admission and go to the site",
    responses=error_answers(
        *QUEUE_TOKEN_ERRORS,
        *ROOM_ERRORS,
        *STORE_ERRORS,
        errors.NotAdmitted,
        errors.AlreadyClaimed,
        errors.AdmissionExpired,
        errors.SessionEnded,
        errors.PositionNotFound,
    ),
)
async def go(
    room: RoomParam,
    people: NamedDependency[People],
    request: Request[Any, Any, Any],
    token: TokenQuery = "",
) -> Response[Any]:
    """Claim an admission (admitted -> active) and 303 to the target URL with
    ``?waitroom_token=<access token>``. ``token`` is the queue token. A second use, an
    expired admission or a bad token gets a page that says so to a browser (``Accept:
    text/html``), the JSON error otherwise."""
    caller = caller_of_request(request)
    try:
        room = valid_room_id(room)
        given = optional_bearer(request) or token
        if not given:
            raise errors.MissingToken()
        location = await people.go(room, caller, given)
    except errors.WaitroomError as err:
        if wants_html(request):
            return go_error_page(room, err)
        raise
    return Response(content=b"", status_code=HTTP_303_SEE_OTHER, headers={"Location": location})


@get("/admin", summary="The operators' live page")
async def admin_html() -> Template:
    """Every room's live figures, refreshed every 2 s, with the line and the admission
    rate of the last two minutes drawn. It asks for the admin key, which stays in the tab
    and is sent only to this gateway's admin API."""
    return page("admin.html", title="waitroom: live rooms")


pages_router = Router(path="/", route_handlers=[room_html, go, admin_html], tags=["pages"])
