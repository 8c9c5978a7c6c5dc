"""The demo protected site that ``waitroom up`` starts: a page only admitted people see.

It is guarded by ``waitroom_site.WaitroomGuard`` like a real shop would be: the access
token it is sent to is checked offline against the gateway's JWKS and moved into a
session cookie; visitors without one are sent to the waiting room. "I'm done" reports
the visit complete so the next person can come in.

python -m waitroom.demo_site
"""

from __future__ import annotations

import html
import os
import sys
from typing import Any

import uvicorn
from litestar import Litestar, Request, get, post

from shared.logs import configure
from shared.settings import DemoSettings, Part, help_page
from waitroom_site import VisitClaims, WaitroomGuard

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
</head><body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto;
padding: 0 1rem">{body}</body></html>"""


def create_demo_app(gateway_url: str, room: str) -> WaitroomGuard:
    @get("/", media_type="text/html")
    async def home(request: Request[Any, Any, Any]) -> str:
        visit: VisitClaims = request.scope["waitroom"]  # type: ignore[typeddict-item]
        body = f"""<h1 id="allowed">You're in.</h1>
<p>Your visit to room <b>{html.escape(visit.room)}</b> is allowed.</p>
<form method="post" action="/done"><button type="submit">I'm done</button></form>"""
        return PAGE.format(title="You're in", body=body)

    @post("/done", media_type="text/html", status_code=200)
    async def done(request: Request[Any, Any, Any]) -> str:
        await guard.complete(request.scope)  # type: ignore[arg-type]
        body = "<p id='done'>Thanks for visiting. Your slot is free again.</p>"
        return PAGE.format(title="Thanks", body=body)

    app = Litestar(route_handlers=[home, done], openapi_config=None)
    guard = WaitroomGuard(app, gateway_url=gateway_url, room=room, heartbeat_every=10)
    return guard


def main() -> None:
    if "--help" in sys.argv[1:]:
        sys.stdout.write(help_page(__doc__ or "", Part.DEMO))
        return
    settings = DemoSettings.from_env_or_exit(os.environ, "python -m waitroom.demo_site")
    app = create_demo_app(settings.gateway_url, settings.room)
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
