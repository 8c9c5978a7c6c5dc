"""Turning a person's state into the answer they see: position, wait estimate, links.

Pure functions of a ``PersonView``: no I/O, so they are tested without servers.
"""

from __future__ import annotations

import math
from urllib.parse import urlencode

from gateway.schemas import PlaceResponse
from shared.store import PersonView

MIN_RATE = 0.01


def eta_seconds(view: PersonView) -> int | None:
    """Seconds until this person is likely admitted, from the rate actually observed.

    Before the room has admitted anyone, the configured release rate stands in. While the
    room is paused or in maintenance, or the person waits for the line to open, nobody can
    honestly say: null.
    """
    if view.state != "waiting":
        return 0
    if view.room_status != "active" or view.prequeue:
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
    """The link that claims an admission (``/rooms/{room}/go?token=<queue token>``)."""
    return f"{base_url}/rooms/{room}/go?{urlencode({'token': token})}"


def target_location(target_url: str, access_token: str) -> str:
    """The protected site's address with the access token added to its query."""
    separator = "&" if "?" in target_url else "?"
    return f"{target_url}{separator}{urlencode({'waitroom_token': access_token})}"


def access_expiry(view: PersonView) -> int:
    """An access token lives until the claim deadline plus a session, or the session end."""
    if view.state == "active":
        return view.session_deadline // 1000
    return view.claim_deadline // 1000 + view.session_ttl


def place_answer(
    view: PersonView,
    *,
    queue_token: str | None = None,
    access_token: str | None = None,
    redirect_url: str | None = None,
) -> PlaceResponse:
    """Where a person stands, as the API answers it. ``queue_token`` is a new or refreshed
    token handed back; ``access_token`` and ``redirect_url`` only where the caller may have
    them."""
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
        access_token=access_token,
        lane=view.lane or None,
        opens_at=view.opens_at / 1000 if view.prequeue else None,
    )
    if view.state == "admitted":
        out.claim_deadline = view.claim_deadline / 1000
        out.redirect_url = redirect_url
    return out
