"""The gateway: ``create_app(settings)`` builds the Litestar app; its lifespan opens the
Redis and NATS clients and the token service and closes them again."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import structlog
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admin_routes import ADMIN_ROUTES
from gateway.errors import EXCEPTION_HANDLERS
from gateway.events_route import events
from gateway.live import LiveHub
from gateway.metrics import GatewayMetrics
from gateway.ops_routes import OPS_ROUTES
from gateway.page import PAGE_ROUTES, static_router
from gateway.queue_routes import QUEUE_ROUTES
from gateway.ratelimit import RateLimiter
from gateway.services import Services
from gateway.session_routes import SESSION_ROUTES
from shared.nats_link import NatsLink
from shared.redis_conn import connect
from shared.settings import Settings
from shared.store import RoomStore
from shared.tokens import KeyKind, KeyRing, TokenService, ensure_keys

log = structlog.get_logger("gateway")

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def access_log_middleware(app: ASGIApp) -> ASGIApp:
    """One summary line and one metrics observation per request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = str(scope.get("path_template") or "unmatched")
            svc: Services | None = getattr(scope["app"].state, "services", None)
            if svc is not None:
                svc.metrics.observe(route, status, elapsed)
            if scope["path"] not in QUIET_PATHS:
                log.info(
                    "request",
                    method=scope.get("method", ""),
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )

    return middleware


def key_kinds(settings: Settings) -> tuple[KeyKind, ...]:
    es256 = settings.queue_token_alg == "ES256"  # noqa: S105 (an algorithm name)
    return ("rsa", "ec") if es256 else ("rsa",)


def create_app(settings: Settings) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        ensure_keys(settings.keys_dir, key_kinds(settings))
        tokens = TokenService(
            KeyRing(settings.keys_dir),
            issuer=settings.issuer,
            audience=settings.audience,
            queue_ttl=settings.queue_token_ttl,
            queue_alg=settings.queue_token_alg,
        )
        redis = connect(settings.redis_url, max_connections=256)
        link = NatsLink.from_settings(settings, "gateway")
        link.start()
        app.state.services = Services(
            settings=settings,
            redis=redis,
            store=RoomStore(redis),
            tokens=tokens,
            limiter=RateLimiter(settings.redis_url, settings.rate_limits),
            nats=link,
            metrics=GatewayMetrics(tokens, settings.outbox_max),
        )
        app.state.live = LiveHub(app.state.services)
        log.info("gateway_started", instance=settings.instance)
        try:
            yield
        finally:
            await app.state.live.close()
            await app.state.services.limiter.close()
            await link.close()
            await redis.aclose()
            tokens.close()
            log.info("gateway_stopped", instance=settings.instance)

    openapi = OpenAPIConfig(
        title="waitroom",
        version="0.1.0",
        description=(
            "A virtual waiting room. People join a fair line, see their place and wait, and "
            "are let in at the pace the protected site can take, with an RS256 access token "
            "the site verifies offline (JWKS) or through this API. Every error is "
            '`{"error": {"code", "message", "retry_after"}}`.'
        ),
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
            }
        ),
        path="/schema",
    )
    return Litestar(
        route_handlers=[
            *QUEUE_ROUTES,
            events,
            *PAGE_ROUTES,
            static_router(),
            *SESSION_ROUTES,
            *ADMIN_ROUTES,
            *OPS_ROUTES,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[access_log_middleware],
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )
