"""The protected site's side: is this access good, keep a visit alive, the visit is over."""

from __future__ import annotations

import time
from collections import Counter as Tally

import structlog

from gateway.answers import access_expiry
from gateway.line_book import LineBook
from gateway.ratelimit import RateLimiter
from gateway.schemas import LatencySummary, SessionResponse, VerifyBody, VerifyResponse
from shared.errors import PositionNotFound, RoomNotFound, RoomRecovering, StoreUnavailable
from shared.site_latency import report_signed
from shared.store import PersonView, RoomStore
from shared.tokens import AccessClaims, TokenService

log = structlog.get_logger("site")

ADMITTED_STATES = frozenset({"admitted", "active"})


class Site:
    def __init__(
        self,
        store: RoomStore,
        tokens: TokenService,
        limiter: RateLimiter,
        site_key: str = "",
        lines: LineBook | None = None,
    ) -> None:
        """``site_key`` (WAITROOM_SITE_KEY): the key the site's guard signs its latency
        reports with; without one no report is kept. ``lines``: this gateway's copy of the
        lines, told of each place a visit takes out of the line (a place put back from its
        queue token and then shown an access token is admitted again, not left waiting)."""
        self.store = store
        self.lines = lines
        self.tokens = tokens
        self.limiter = limiter
        self.site_key = site_key
        self.reports: Tally[str] = Tally()
        """Latency reports by outcome (``waitroom_site_reports``): kept, unsigned (no MAC),
        bad_mac, no_site_key (this gateway has none), not_admitted."""

    async def verify(self, body: VerifyBody) -> VerifyResponse:
        """Is this access token good for ``room``, now; from the token alone while the data
        store is away or the room is being rebuilt (``checked: "offline"``)."""
        claims = self.tokens.verify_access(body.token, body.room)
        await self.limiter.check("session", claims.sub)
        try:
            view = await self.store.status(claims.room, claims.sub)
        except (PositionNotFound, RoomNotFound):
            return VerifyResponse(
                active=False, room=claims.room, sub=claims.sub, exp=claims.exp, state="unknown"
            )
        except (StoreUnavailable, RoomRecovering):  # (the room is being rebuilt)
            return VerifyResponse(
                active=claims.exp > time.time(),
                room=claims.room,
                sub=claims.sub,
                exp=claims.exp,
                checked="offline",
            )
        return VerifyResponse(
            active=view.state in ADMITTED_STATES,
            room=claims.room,
            sub=claims.sub,
            exp=claims.exp,
            state=view.state,
        )

    async def heartbeat(
        self,
        token: str,
        latency: LatencySummary | None = None,
        *,
        body: bytes = b"",
        mac: str | None = None,
    ) -> SessionResponse:
        """Claims the admission if it was not yet claimed, else moves the session's end to
        ``session_ttl`` from now; answers a refreshed access token. ``latency`` (the site's
        response times since its last report) is kept for the room's pace when ``mac`` is
        the guard's MAC of the ``body`` it came in (``report_signed``), from live visits
        only; an unsigned or badly signed report is counted and dropped, the heartbeat
        itself goes on."""
        claims = self.tokens.verify_access(token)
        await self.limiter.check("session", claims.sub)
        view = await self.store.claim(claims.room, claims.sub, touch=True)
        self._wrote(claims.room, view)
        if latency is not None:
            outcome = self._report_outcome(claims, view, body, mac)
            self.reports[outcome] += 1
            if outcome == "kept":
                await self.store.report_latency(
                    claims.room,
                    claims.sub,
                    count=latency.count,
                    p50=latency.p50_ms,
                    p95=latency.p95_ms,
                    top=latency.max_ms,
                )
            else:
                log.debug("latency_report_dropped", room=claims.room, reason=outcome)
        return await self._answer(claims, view, refresh=True)

    def _report_outcome(
        self, claims: AccessClaims, view: PersonView, body: bytes, mac: str | None
    ) -> str:
        if not self.site_key:
            return "no_site_key"
        if not mac:
            return "unsigned"
        if not report_signed(self.site_key, claims.room, claims.sub, body, mac):
            return "bad_mac"
        if view.state not in ADMITTED_STATES:
            return "not_admitted"
        return "kept"

    async def complete(self, token: str) -> SessionResponse:
        """Ends the visit and frees its units at once."""
        claims = self.tokens.verify_access(token)
        await self.limiter.check("session", claims.sub)
        view = await self.store.complete(claims.room, claims.sub)
        self._wrote(claims.room, view)
        return await self._answer(claims, view, refresh=False)

    def _wrote(self, room: str, view: PersonView) -> None:
        if self.lines is not None:
            self.lines.wrote(room, view)

    async def _answer(
        self, claims: AccessClaims, view: PersonView, *, refresh: bool
    ) -> SessionResponse:
        out = SessionResponse(
            active=view.state in ADMITTED_STATES, room=claims.room, sub=claims.sub, state=view.state
        )
        if view.state == "active":
            out.session_deadline = view.session_deadline / 1000
        if refresh and view.state in ADMITTED_STATES:
            out.access_token = await self.tokens.sign_access(
                claims.room, claims.sub, iat=view.admitted_at // 1000, exp=access_expiry(view)
            )
        return out
