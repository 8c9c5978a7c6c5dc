"""The API of the protected site: is this access good, keep it alive, the visit is over."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, post
from litestar.datastructures import State

from gateway.bodies import read_body
from gateway.client import bearer
from gateway.places import access_expiry
from gateway.schemas import SessionResponse, VerifyBody, VerifyResponse
from gateway.services import Services, services_from_state
from shared.errors import PositionNotFound, RoomNotFound, StoreUnavailable
from shared.store import PersonView
from shared.tokens import AccessClaims

LIVE = ("admitted", "active")


async def _session_answer(
    svc: Services, claims: AccessClaims, view: PersonView, *, refresh: bool
) -> SessionResponse:
    out = SessionResponse(
        active=view.state in LIVE, room=claims.room, sub=claims.sub, state=view.state
    )
    if view.state == "active":
        out.session_deadline = view.session_deadline / 1000
    if refresh and view.state in LIVE:
        out.access_token = await svc.tokens.sign_access(
            claims.room, claims.sub, iat=view.admitted_at // 1000, exp=access_expiry(view)
        )
    return out


@post("/v1/session/verify", status_code=200, summary="Is this access still good")
async def verify(request: Request[Any, Any, Any], state: State) -> VerifyResponse:
    """Body ``{"token": "...", "room": "optional"}``. A forged, expired or queue-typed token
    is refused (401); a token for another room than ``room`` gets 403. A good token whose
    visit has ended answers ``active: false``. While the data store is away the answer
    comes from the token alone (``checked: "offline"``)."""
    svc = services_from_state(state)
    body = await read_body(request, VerifyBody)
    assert body is not None
    claims = svc.tokens.verify_access(body.token, body.room)
    await svc.limiter.check("session", claims.sub)
    try:
        view = await svc.store.status(claims.room, claims.sub)
    except (PositionNotFound, RoomNotFound):
        return VerifyResponse(
            active=False, room=claims.room, sub=claims.sub, exp=claims.exp, state="unknown"
        )
    except StoreUnavailable:
        return VerifyResponse(
            active=claims.exp > time.time(),
            room=claims.room,
            sub=claims.sub,
            exp=claims.exp,
            checked="offline",
        )
    return VerifyResponse(
        active=view.state in LIVE,
        room=claims.room,
        sub=claims.sub,
        exp=claims.exp,
        state=view.state,
    )


@post("/v1/session/heartbeat", status_code=200, summary="Keep a session alive")
async def session_heartbeat(request: Request[Any, Any, Any], state: State) -> SessionResponse:
    """Bearer access token. Claims the admission if it was not yet claimed, else moves the
    session's end to session_ttl from now; answers a refreshed ``access_token``."""
    svc = services_from_state(state)
    claims = svc.tokens.verify_access(bearer(request))
    await svc.limiter.check("session", claims.sub)
    view = await svc.store.claim(claims.room, claims.sub, touch=True)
    return await _session_answer(svc, claims, view, refresh=True)


@post("/v1/session/complete", status_code=200, summary="The visit is over")
async def complete(request: Request[Any, Any, Any], state: State) -> SessionResponse:
    """Bearer access token. Ends the visit and frees its units at once."""
    svc = services_from_state(state)
    claims = svc.tokens.verify_access(bearer(request))
    await svc.limiter.check("session", claims.sub)
    view = await svc.store.complete(claims.room, claims.sub)
    return await _session_answer(svc, claims, view, refresh=False)


SESSION_ROUTES = [verify, session_heartbeat, complete]
