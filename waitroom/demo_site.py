"""The demo protected site that ``waitroom up`` starts: a page only admitted people see.

It checks the ``waitroom_token`` it is sent to through the gateway's
``/v1/session/verify``; without a good token it sends the visitor to the waiting room.
A "done" button reports the visit complete so the next person can come in.

python -m waitroom.demo_site  (WAITROOM_DEMO_PORT, WAITROOM_GATEWAY_URL, WAITROOM_DEMO_ROOM)
"""

from __future__ import annotations

import html
import os
import sys
from typing import Any

import httpx
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.response import Redirect


def create_demo_app(gateway_url: str, room: str) -> Litestar:
    gateway_url = gateway_url.rstrip("/")

    async def check(token: str) -> dict[str, Any] | None:
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.post(f"{gateway_url}/v1/session/verify", json={"token": token})
        if r.status_code != 200:
            return None
        body: dict[str, Any] = r.json()
        return body if body.get("active") else None

    @get("/", media_type="text/html")
    async def home(request: Request[Any, Any, Any]) -> Response[Any]:
        token = request.query_params.get("waitroom_token") or request.cookies.get("waitroom")
        session = await check(token) if token else None
        if token is None or session is None:
            return Redirect(f"{gateway_url}/rooms/{room}")
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>You're in</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto">
<h1 id="allowed">You're in.</h1>
<p>Your visit to room <b>{html.escape(session["room"])}</b> is allowed.</p>
<form method="post" action="/done"><button type="submit">I'm done</button></form>
</body></html>"""
        resp = Response(page, media_type="text/html")
        resp.set_cookie("waitroom", token, httponly=True, samesite="lax")
        return resp

    @post("/done", media_type="text/html", status_code=200)
    async def done(request: Request[Any, Any, Any]) -> str:
        token = request.cookies.get("waitroom")
        if token:
            async with httpx.AsyncClient(timeout=5) as client:
                await client.post(
                    f"{gateway_url}/v1/session/complete",
                    headers={"Authorization": f"Bearer {token}"},
                )
        return "<!doctype html><p id='done'>Thanks for visiting. Your slot is free again.</p>"

    return Litestar(route_handlers=[home, done], openapi_config=None)


def main() -> None:
    if "--help" in sys.argv[1:]:
        sys.stdout.write((__doc__ or "").strip() + "\n")
        return
    port = int(os.environ.get("WAITROOM_DEMO_PORT", "8001"))
    app = create_demo_app(
        os.environ.get("WAITROOM_GATEWAY_URL", "http://127.0.0.1:8000"),
        os.environ.get("WAITROOM_DEMO_ROOM", "demo"),
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
