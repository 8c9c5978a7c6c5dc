"""The demo protected site that ``waitroom up`` starts: a page only admitted people see.

It is guarded by ``waitroom_site.WaitroomGuard`` like a real shop would be: the access
token it is sent to is checked offline against the gateway's JWKS and moved into a
session cookie; visitors without one are sent to the waiting room. The page says how long
the visit has left and warns when it ends within two minutes. "I'm done" reports the visit
complete so the next person can come in.

Its guard signs its latency reports with WAITROOM_SITE_KEY, the key the gateways have.
With WAITROOM_DEMO_MS_PER_VISIT set, the site slows down under load the way a real one
does: each page takes that many milliseconds for every visit active on the site (seen in
the last few seconds). A room with ``auto_release`` then slows its admissions to keep the
site's latency at ``target_latency_ms``.

python -m waitroom.demo_site
"""

from __future__ import annotations

import asyncio
import html
import math
import os
import sys
import time
from typing import Any

import uvicorn
from litestar import Litestar, Request, get, post

from shared.logs import configure
from shared.settings import DemoSettings, Part, Settings, help_page
from waitroom_site import VisitClaims, WaitroomGuard

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
</head><body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto;
padding: 0 1rem">{body}</body></html>"""

WARN_SECONDS = 120
"""A visit with less than this left is warned that its time ends soon."""
ACTIVE_WINDOW = 5.0
"""A visit counts as active on the site for this many seconds after its last request."""

# Counts the time left down in the page and warns once it is under WARN_SECONDS.
COUNTDOWN = """<script>
(function () {
  var box = document.getElementById("time-left");
  var end = Number(box.getAttribute("data-deadline")) * 1000;
  var warn = Number(box.getAttribute("data-warn"));
  function words(s) {
    if (s <= 0) return "Your time is up.";
    if (s < 60) return "Your time ends in " + s + (s === 1 ? " second." : " seconds.");
    var m = Math.ceil(s / 60);
    return "Your time ends in " + m + (m === 1 ? " minute." : " minutes.");
  }
  function tick() {
    var s = Math.max(0, Math.round((end - Date.now()) / 1000));
    box.textContent = "Time left: " + Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    var notice = document.getElementById("time-notice");
    if (s <= warn) { notice.hidden = false; notice.textContent = words(s); }
  }
  tick();
  setInterval(tick, 1000);
})();
</script>"""


def time_words(seconds: float) -> str:
    """ "Your time ends in 2 minutes." (what the demo tells a visit near its end)."""
    s = max(0, math.ceil(seconds))
    if s <= 0:
        return "Your time is up."
    if s < 60:
        return f"Your time ends in {s} second{'' if s == 1 else 's'}."
    m = math.ceil(s / 60)
    return f"Your time ends in {m} minute{'' if m == 1 else 's'}."


class SiteLoad:
    """How busy the demo is: the visits seen in the last ``ACTIVE_WINDOW`` seconds. Each
    request takes ``ms_per_visit`` for every one of them (0: the site never slows)."""

    def __init__(self, ms_per_visit: float, window: float = ACTIVE_WINDOW) -> None:
        self.ms_per_visit = ms_per_visit
        self.window = window
        self._seen: dict[str, float] = {}

    def active(self) -> int:
        cutoff = time.monotonic() - self.window
        for sub in [s for s, at in self._seen.items() if at < cutoff]:
            del self._seen[sub]
        return len(self._seen)

    def visit(self, sub: str) -> float:
        """Note a request of this visit; answers the seconds it takes to serve."""
        self._seen[sub] = time.monotonic()
        return self.ms_per_visit * self.active() / 1000

    def left(self, sub: str) -> None:
        self._seen.pop(sub, None)


def visit_page(visit: VisitClaims) -> str:
    left = visit.seconds_left()
    warn = left <= WARN_SECONDS
    return f"""<h1 id="allowed">You're in.</h1>
<p>Your visit to room <b>{html.escape(visit.room)}</b> is allowed.</p>
<p id="time-left" data-deadline="{visit.session_deadline or visit.exp:.0f}"
  data-warn="{WARN_SECONDS}">Time left: {int(left) // 60}:{int(left) % 60:02d}</p>
<p id="time-notice" role="alert" style="font-weight: 600; color: #8a1f1f"
  {"" if warn else "hidden"}>{time_words(left) if warn else ""}</p>
<form method="post" action="/done"><button type="submit">I'm done</button></form>
{COUNTDOWN}"""


def create_demo_app(
    gateway_url: str,
    room: str,
    *,
    ms_per_visit: float = 0.0,
    heartbeat_every: float = 10.0,
    report_every: float = 5.0,
    site_key: str = "",
) -> WaitroomGuard:
    load = SiteLoad(ms_per_visit)

    @get("/", media_type="text/html")
    async def home(request: Request[Any, Any, Any]) -> str:
        visit: VisitClaims = request.scope["waitroom"]  # type: ignore[typeddict-item]
        delay = load.visit(visit.sub)
        if delay > 0:
            await asyncio.sleep(delay)
        return PAGE.format(title="You're in", body=visit_page(visit))

    @post("/done", media_type="text/html", status_code=200)
    async def done(request: Request[Any, Any, Any]) -> str:
        visit: VisitClaims = request.scope["waitroom"]  # type: ignore[typeddict-item]
        load.left(visit.sub)
        await guard.complete(request.scope)  # type: ignore[arg-type]
        body = "<p id='done'>Thanks for visiting. Your slot is free again.</p>"
        return PAGE.format(title="Thanks", body=body)

    app = Litestar(route_handlers=[home, done], openapi_config=None)
    guard = WaitroomGuard(
        app,
        gateway_url=gateway_url,
        room=room,
        heartbeat_every=heartbeat_every,
        report_every=report_every,
        site_key=site_key,
    )
    return guard


def main() -> None:
    if "--help" in sys.argv[1:]:
        sys.stdout.write(help_page(__doc__ or "", Part.DEMO))
        return
    prog = "python -m waitroom.demo_site"
    settings = DemoSettings.from_env_or_exit(os.environ, prog)
    site_key = Settings.from_env_or_exit(os.environ, prog).site_key  # shared with the gateways
    app = create_demo_app(
        settings.gateway_url,
        settings.room,
        ms_per_visit=settings.ms_per_visit,
        site_key=site_key,
    )
    configure()  # after Litestar's own
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # uvicorn's records go to the root handler configure() installed
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
