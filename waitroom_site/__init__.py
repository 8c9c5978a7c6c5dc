"""For the protected site: let in only the people the waiting room admitted.

``WaitroomGuard`` is ASGI middleware (Litestar, Starlette/FastAPI, any ASGI app)::

    app = WaitroomGuard(app, gateway_url="https://wait.example.com", room="sale")

When the visit is over (an order placed, a table booked), one line frees the slot::

    await guard.complete(scope)      # or request.scope

See ``waitroom_site.guard`` for what it checks and how.
"""

from waitroom_site.guard import VisitClaims, WaitroomGuard

__all__ = ["VisitClaims", "WaitroomGuard"]
