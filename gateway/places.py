"""Turning a person's state into the answer they see: position, ETA, tokens."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from gateway.schemas import PlaceResponse
from gateway.services import Services
from shared.store import PersonView

MIN_RATE = 0.01


def eta_seconds(view: PersonView) -> int | None:
    """Seconds until this person is likely admitted, from the rate actually observed.

    Before the room has admitted anyone, the configured release rate stands in. While the
    room is paused or in maintenance nobody can honestly say: null.
    """
    if view.state != "waiting":
        return 0
    if view.room_status != "active":
        return None
    rate = view.observed_rate()
    if rate < MIN_RATE:
        rate = view.release_rate
    position = view.position or 1
    return math.ceil(position / max(rate, MIN_RATE))


def eta_range(view: PersonView) -> list[int] | None:
    """A range around the estimate, as wide as the evidence is thin: the relative spread of
    a count of n admissions is about 1/sqrt(n), and with no admissions seen yet (only the
    configured rate to go on) the range is wide."""
    eta = eta_seconds(view)
    if eta is None or view.state != "waiting":
        return None
    rate = view.observed_rate()
    seen = rate * 30  # admissions in the observation window, about
    spread = 0.5 if rate < MIN_RATE else max(0.15, 1.5 / math.sqrt(seen + 1))
    return [max(0, math.floor(eta * (1 - spread))), math.ceil(eta * (1 + spread))]


def go_url(base_url: str, room: str, token: str) -> str:
    return f"{base_url}/rooms/{room}/go?{urlencode({'token': token})}"


def access_expiry(view: PersonView) -> int:
    """An access token lives until the claim deadline plus a session, or the session end."""
    if view.state == "active":
        return view.session_deadline // 1000
    return view.claim_deadline // 1000 + view.session_ttl


async def place_response(
    svc: Services,
    room: str,
    view: PersonView,
    *,
    base_url: str,
    go_token: str,
    queue_token: str | None = None,
) -> PlaceResponse:
    """``go_token`` is the queue token the redirect URL carries; ``queue_token`` is a new
    or refreshed token handed back (enqueue, heartbeat)."""
    out = PlaceResponse(
        position_id=view.position_id,
        state=view.state,
        position=view.position,
        ahead=view.ahead,
        total=view.total,
        eta_seconds=eta_seconds(view),
        eta_range=eta_range(view),
        heartbeat_interval=view.heartbeat_interval,
        room_status=view.room_status,
        token=queue_token,
        reason=view.reason or None,
    )
    if view.state in ("admitted", "active"):
        out.access_token = await svc.tokens.sign_access(
            room, view.position_id, iat=view.admitted_at // 1000, exp=access_expiry(view)
        )
        if view.state == "admitted":
            out.claim_deadline = view.claim_deadline / 1000
            out.redirect_url = go_url(base_url, room, go_token)
    return out


async def new_queue_token(svc: Services, room: str, view: PersonView) -> str:
    return await svc.tokens.sign_queue(
        room,
        view.position_id,
        arrival=view.arrival,
        size=view.size,
        priority=view.priority,
        bind=view.bind,
    )
