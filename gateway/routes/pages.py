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
from gateway.i18n import DEFAULT_LANGUAGE, PageTexts, catalogs
from gateway.people import People
from gateway.routes.common import RoomParam, caller_of_request, valid_room_id
from shared import errors
from shared.room import RoomConfig

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
GO_PAGES = frozenset({"already_claimed", "session_ended", "admission_expired", "not_admitted"})
"""Errors of ``/go`` with a page of their own (catalog keys ``go_<code>_title/_text``);
the rest get ``go_broken``."""
TokenQuery = Annotated[
    str, QueryParameter(name="token", description="The queue token of the admitted place.")
]


def page(
    template: str, *, status: int = 200, texts: PageTexts | None = None, **context: Any
) -> Template:
    context.setdefault("brand", BRAND)
    context["lang"] = texts.language if texts else DEFAULT_LANGUAGE
    headers = SECURITY_HEADERS
    if texts is not None:
        headers = {
            **SECURITY_HEADERS,
            "Content-Language": texts.language,
            "Vary": "Accept-Language",
        }
    return Template(
        template_name=template,
        context=context,
        status_code=status,
        media_type="text/html",
        headers=headers,
    )


def visitor_texts(request: Request[Any, Any, Any], config: RoomConfig | None = None) -> PageTexts:
    """The page's texts in the visitor's language, with the room's own texts over them."""
    overrides = config.texts if config is not None else None
    return catalogs().for_request(request.headers.get("accept-language"), overrides)


def message_page(
    texts: PageTexts, name: str, *, link: str | None = None, status: int = 200
) -> Template:
    """A page of one message: the catalog's ``<name>_title`` and ``<name>_text``."""
    return page(
        "message.html",
        status=status,
        texts=texts,
        title=texts[f"{name}_title"],
        text=texts[f"{name}_text"],
        link=link,
        link_text=texts["back_to_room"],
    )


def room_page_error(texts: PageTexts, err: errors.WaitroomError) -> Template:
    if isinstance(err, errors.StoreUnavailable | errors.RoomRecovering):
        return message_page(texts, "store_down", status=503)  # "reload in a few seconds"
    return message_page(texts, "no_room", status=err.status)


@get(
    "/rooms/{room:str}",
    summary="The waiting-room page",
    responses={
        status: ResponseSpec(data_container=str, media_type="text/html", description=text)
        for status, text in (
            (400, "`invalid_room_id`: a page saying there is no such room."),
            (404, "`room_not_found`: a page saying there is no such room."),
            (
                503,
                "`store_unavailable`, `room_recovering`: a page asking to reload in a few seconds.",
            ),
        )
    },
)
async def room_html(
    room: RoomParam, people: NamedDependency[People], request: Request[Any, Any, Any]
) -> Template:
    """Joins or restores the person's place and follows it live; see the README. The
    page speaks the visitor's language (``Accept-Language``: en, de, fr, es, ja, and any
    language the room has ``texts`` for; English otherwise)."""
    caller = caller_of_request(request)
    try:
        room = valid_room_id(room)
        config = await people.room(room)
        initial = await people.first_paint(room, caller, request.cookies.get(cookie_name(room)))
    except (
        errors.InvalidRoomId,
        errors.RoomNotFound,
        errors.StoreUnavailable,
        errors.RoomRecovering,
    ) as err:
        return room_page_error(visitor_texts(request), err)
    texts = visitor_texts(request, config)
    return page(
        "room.html",
        texts=texts,
        t=texts,
        texts_json=msgspec.json.encode(texts.messages).decode(),
        room=room,
        initial=msgspec.json.encode(initial).decode(),
        title=config.title or texts["page_title"],
        message=config.message or texts["message"],
        logo_url=config.logo_url,
        brand=config.brand_color,
        pow_difficulty=config.pow_difficulty,
        max_party_size=config.max_party_size,
    )


def cookie_name(room: str) -> str:
    """The cookie the room page keeps its queue token in (see room.js)."""
    return f"waitroom_{room}"


def wants_html(request: Request[Any, Any, Any]) -> bool:
    return "text/html" in request.headers.get("accept", "")


def go_error_page(texts: PageTexts, room: str, err: errors.WaitroomError) -> Template:
    if isinstance(err, errors.StoreUnavailable | errors.RoomRecovering):
        name = "store_down"  # "try reloading in a few seconds": the admission is kept
    else:
        name = f"go_{err.code}" if err.code in GO_PAGES else "go_broken"
    return message_page(texts, name, link=f"/rooms/{room}", status=err.status)


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
    text/html``), the JSON error otherwise; while the data store is away or the room is
    being rebuilt, a page asking to reload in a few seconds (the admission is kept)."""
    caller = caller_of_request(request)
    try:
        room = valid_room_id(room)
        given = optional_bearer(request) or token
        if not given:
            raise errors.MissingToken()
        location = await people.go(room, caller, given)
    except errors.WaitroomError as err:
        if wants_html(request):
            return go_error_page(visitor_texts(request), room, err)
        raise
    return Response(content=b"", status_code=HTTP_303_SEE_OTHER, headers={"Location": location})


@get("/admin", summary="The operators' live page")
async def admin_html() -> Template:
    """Every room's live figures, refreshed every 2 s, with the line and the admission
    rate of the last two minutes drawn. It asks for the admin key, which stays in the tab
    and is sent only to this gateway's admin API."""
    return page("admin.html", title="waitroom: live rooms")


pages_router = Router(path="/", route_handlers=[room_html, go, admin_html], tags=["pages"])
