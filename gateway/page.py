"""The pages a person's browser sees: the waiting room, and the answers of /go."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_303_SEE_OTHER

from gateway.client import bearer
from gateway.places import place_response
from gateway.queue_routes import base_url, current_or_restored, queue_claims
from gateway.services import Services, services_from_state
from shared.errors import RoomNotFound, StoreUnavailable, WaitroomError
from shared.keys import ROOM_ID_PATTERN
from shared.room import RoomConfig
from shared.store import require_room

STATIC_DIR = Path(__file__).parent / "static"
STATIC_VERSION = "1"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' https: http:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_router() -> Any:
    return create_static_files_router(
        path="/static", directories=[STATIC_DIR], include_in_schema=False, name="static"
    )


def _page(title: str, body: str, *, brand: str = "#1f5f99", status: int = 200) -> Response[str]:
    doc = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="/static/room.css?v={STATIC_VERSION}">
</head>
<body style="--brand: {html.escape(brand)}">
{body}
</body>
</html>"""
    # the brand colour (validated: #rrggbb) is set as a custom property in a style
    # attribute, which the policy allows for attributes only
    headers = dict(SECURITY_HEADERS)
    headers["Content-Security-Policy"] += "; style-src-attr 'unsafe-inline'"
    return Response(doc, status_code=status, media_type="text/html", headers=headers)


def message_page(
    title: str,
    text: str,
    *,
    link: str | None = None,
    link_text: str = "",
    status: int = 200,
    brand: str = "#1f5f99",
) -> Response[str]:
    action = (
        f'<p><a class="button" href="{html.escape(link)}">{html.escape(link_text)}</a></p>'
        if link
        else ""
    )
    body = f"""<main>
<h1>{html.escape(title)}</h1>
<p class="lead">{html.escape(text)}</p>
{action}
</main>"""
    return _page(title, body, status=status, brand=brand)


def room_page(room: str, config: RoomConfig, initial: dict[str, Any]) -> Response[str]:
    title = config.title or "You're in line"
    message = config.message or (
        "Lots of people are trying to get in right now. We let everyone through in the order "
        "they arrived, at the pace the site can handle."
    )
    logo = (
        f'<img class="logo" src="{html.escape(config.logo_url)}" alt="">' if config.logo_url else ""
    )
    data = html.escape(msgspec.json.encode(initial).decode(), quote=True)
    body = f"""<main id="waitroom" data-room="{html.escape(room)}" data-initial="{data}"
  data-show="joining" aria-labelledby="title">
{logo}
<h1 id="title">{html.escape(title)}</h1>
<p class="lead">{html.escape(message)}</p>
<div role="status" aria-live="polite" aria-atomic="true" class="sr-only" id="announce"></div>

<section class="panel joining"><p>Finding your place in line&hellip;</p></section>

<section class="panel waiting">
  <div class="place"><span class="number" id="position">&ndash;</span>
    <span class="label">your place in line</span></div>
  <p id="ahead"></p>
  <div class="bar" id="bar" role="progressbar" aria-label="Progress through the line"
    aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"><span id="bar-fill"></span></div>
  <p class="eta" id="eta"></p>
  <p class="fine"><span class="status-dot"></span>Keep this page open: it updates by itself,
  and you keep your place if you refresh or open it in another tab.</p>
</section>

<section class="panel paused"><p><strong>The line is paused for a moment.</strong>
  Nobody is being let in right now, and you keep your place.</p></section>

<section class="panel admitted"><h2>It's your turn!</h2>
  <p>Taking you to the site now&hellip;</p>
  <a class="button" id="go" href="#">Go to the site</a></section>

<section class="panel maintenance"><h2>We're doing some maintenance</h2>
  <p>The site will be back shortly. This page will try again by itself.</p></section>

<section class="panel expired"><h2>Your place has expired</h2>
  <p>We lost contact with this page for too long, so the place went to the next person.</p>
  <button type="button" id="rejoin">Join the line again</button></section>

<section class="panel ended"><h2>Your visit has ended</h2>
  <p>Thanks for waiting. You can close this page.</p></section>

<section class="panel full"><h2>The line is full right now</h2>
  <p id="full-reason"></p></section>
</main>
<script src="/static/room.js?v={STATIC_VERSION}" defer></script>"""
    return _page(title, body, brand=config.brand_color)


def cookie_name(room: str) -> str:
    return f"waitroom_{room}"


async def _initial_state(
    svc: Services, room: str, request: Request[Any, Any, Any]
) -> dict[str, Any]:
    """What the person already has, from the cookie the page set, for the first paint."""
    token = request.cookies.get(cookie_name(room))
    if not token:
        return {}
    try:
        claims = queue_claims(request, svc, room, token)
        view = await current_or_restored(svc, room, claims, touch=True)
        answer = await place_response(
            svc, room, view, base_url=base_url(request, svc), go_token=token
        )
    except WaitroomError as exc:
        if exc.status in (401, 403):
            return {"state": "expired", "reason": exc.code}
        return {}
    out = msgspec.structs.asdict(answer)
    out.pop("token", None)
    return {k: v for k, v in out.items() if v is not None}


@get("/rooms/{room:str}", summary="The waiting-room page", media_type="text/html")
async def room_html(
    room: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[str]:
    """Joins or restores the person's place and follows it live; see the README."""
    svc = services_from_state(state)
    if not ROOM_ID_PATTERN.match(room):
        return message_page("No such waiting room", "Check the address.", status=404)
    try:
        config = await require_room(svc.store, room)
        initial = await _initial_state(svc, room, request)
    except RoomNotFound:
        return message_page("No such waiting room", "Check the address.", status=404)
    except StoreUnavailable:
        return message_page(
            "One moment, please",
            "We can't reach the line right now. This page will work again shortly: "
            "try reloading in a few seconds. Your place is kept.",
            status=503,
        )
    return room_page(room, config, initial)


def wants_html(request: Request[Any, Any, Any]) -> bool:
    return "text/html" in request.headers.get("accept", "")


GO_PAGES = {
    "already_claimed": (
        "You've already gone in",
        "This admission was used already. If that "
        "was you in another tab or window, carry on there.",
    ),
    "session_ended": ("This visit has ended", "The admission was used and the visit is over."),
    "admission_expired": (
        "Your turn has passed",
        "The admission wasn't used in time, so it "
        "went to the next person. You can join the line again.",
    ),
    "not_admitted": (
        "It isn't your turn yet",
        "You're still in line. Go back to the waiting "
        "room page: it will take you in when it's your turn.",
    ),
}


def go_error_page(room: str, err: WaitroomError) -> Response[str]:
    title, text = GO_PAGES.get(
        err.code, ("This link doesn't work", "It may have expired. You can join the line again.")
    )
    return message_page(
        title, text, link=f"/rooms/{room}", link_text="Back to the waiting room", status=err.status
    )


@get("/rooms/{room:str}/go", summary="Claim an admission and go to the site")
async def go(room: FromPath[str], request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """Claim an admission (admitted -> active) and 303 to the target URL with
    ``?waitroom_token=<access token>``. ``token`` is the queue token. A second use, an
    expired admission or a bad token gets a page that says so to a browser (``Accept:
    text/html``), the JSON error otherwise."""
    svc = services_from_state(state)
    try:
        if not ROOM_ID_PATTERN.match(room):
            raise RoomNotFound()
        claims = queue_claims(request, svc, room, bearer(request, query_name="token"))
        view = await svc.store.claim(room, claims.sub)
    except WaitroomError as err:
        if wants_html(request):
            return go_error_page(room, err)
        raise
    out = await place_response(svc, room, view, base_url=base_url(request, svc), go_token="")
    separator = "&" if "?" in view.target_url else "?"
    location = f"{view.target_url}{separator}{urlencode({'waitroom_token': out.access_token})}"
    return Response(content=b"", status_code=HTTP_303_SEE_OTHER, headers={"Location": location})


@get("/admin", summary="The operators' live page", media_type="text/html")
async def admin_html() -> Response[str]:
    """Every room's live figures, refreshed every 2 s, with the line and the admission
    rate of the last two minutes drawn. It asks for the admin key, which stays in the tab
    and is sent only to this gateway's admin API."""
    body = (
        """<main class="wide">
<h1>waitroom: live rooms</h1>
<form id="login">
  <p class="lead">Enter the admin key (WAITROOM_ADMIN_KEY) to watch the rooms.</p>
  <label for="key" class="sr-only">Admin key</label>
  <input type="password" id="key" autocomplete="off" required>
  <button type="submit">Watch</button>
</form>
<p class="fine" id="note" role="status" aria-live="polite"></p>
<div id="rooms"></div>
</main>
<script src="/static/admin.js?v="""
        + STATIC_VERSION
        + """" defer></script>"""
    )
    return _page("waitroom: live rooms", body)


PAGE_ROUTES = [room_html, go, admin_html]
