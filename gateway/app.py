"""The gateway: ``create_app(settings)`` builds the Litestar app from its routers (people
waiting, the protected site, operators, pages, operations); its lifespan opens the services
(see services.py) and closes them again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from gateway.assets import StaticAssets
from gateway.bodies import StrictJsonRequest
from gateway.draining import on_termination
from gateway.errors import EXCEPTION_HANDLERS
from gateway.event_streams import event_streams
from gateway.fast_answers import MemoryAnswers
from gateway.fast_joins import FastJoins
from gateway.request_log import access_log_middleware
from gateway.routes.admin import admin_router
from gateway.routes.openapi import ClosedStructs
from gateway.routes.ops import ops_router
from gateway.routes.pages import pages_router
from gateway.routes.people import people_router
from gateway.routes.site import site_router
from gateway.services import SERVICE_DEPENDENCIES, open_services
from gateway.slow_clients import body_deadline_middleware
from shared.heap import freeze_startup_heap
from shared.metrics_server import metrics_port
from shared.settings import Settings

log = structlog.get_logger("gateway")


def create_app(settings: Settings) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            render = services.operations.metrics_text
            async with metrics_port(render, settings.host, settings.metrics_port):
                # on SIGTERM, event streams are told to reconnect elsewhere at once
                undo = on_termination(services.live.drain)
                freeze_startup_heap()
                log.info("gateway_started", instance=settings.instance)
                try:
                    yield
                finally:
                    undo()
        log.info("gateway_stopped", instance=settings.instance)

    openapi = OpenAPIConfig(
        title="waitroom",
        version="0.1.0",
        description=(
            "A virtual waiting room. People join a fair line, see their place and wait, and "
            "are let in at the pace the protected site can take, with an RS256 access token "
            "the site verifies offline (JWKS) or through this API. Every error is "
            '`{"error": {"code", "message", "retry_after"}}` with a stable `code`; each '
            "route lists the codes it may answer."
        ),
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
            }
        ),
        path="/schema",
    )
    assets = StaticAssets()
    app = Litestar(
        route_handlers=[
            people_router,
            site_router,
            admin_router,
            pages_router,
            ops_router,
            assets.router(),
        ],
        dependencies=SERVICE_DEPENDENCIES,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            access_log_middleware(settings.access_log),
            body_deadline_middleware(settings.body_timeout, settings.max_body_bytes),
        ],
        openapi_config=openapi,
        template_config=assets.template_config(),
        plugins=[ClosedStructs()],
        request_max_body_size=settings.max_body_bytes,
        request_class=StrictJsonRequest,
        debug=False,
    )
    # before the framework: Litestar.__call__ sets scope["app"], then calls these, the
    # last wrapped first: status and heartbeats, the calls made most, pass no other check
    if settings.fast_joins:
        joins = FastJoins(app.asgi_handler, settings.access_log, app)
        app.asgi_handler = app.state.fast_joins = joins
    app.asgi_handler = event_streams(app.asgi_handler, settings.access_log)
    if settings.lines_in_memory:
        # the connection protocol finds them here (lean_connections.py)
        app.state.memory_answers = answers = MemoryAnswers(app, settings.access_log)
        app.asgi_handler = answers.asgi(app.asgi_handler)
    return app
