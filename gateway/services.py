"""What a gateway process holds while it runs: its clients and the domain services built on
them, opened and closed by the app's lifespan, and handed to handlers with ``Provide``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar.datastructures import State
from litestar.di import Provide

from gateway.config_guard import ConfigGuard
from gateway.line_book import LineBook
from gateway.live import LiveHub, StreamLimits
from gateway.metrics import GatewayMetrics
from gateway.operations import Operations
from gateway.operators import Operators, admin_keys
from gateway.people import People
from gateway.ratelimit import RateLimiter
from gateway.site import Site
from shared.keyring import KeyKind, KeyRing, deployment_salt, ensure_keys
from shared.nats_link import NatsLink
from shared.redis_conn import connect
from shared.settings import Settings
from shared.store import RoomStore
from shared.store.lane import ScriptLane
from shared.store.limits import LimitWindows
from shared.tokens import TokenService


@dataclass
class Services:
    settings: Settings
    store: RoomStore
    tokens: TokenService
    limiter: RateLimiter
    nats: NatsLink
    metrics: GatewayMetrics
    people: People
    site: Site
    operators: Operators
    operations: Operations
    live: LiveHub


def key_kinds(settings: Settings) -> tuple[KeyKind, ...]:
    es256 = settings.queue_token_alg == "ES256"  # noqa: S105 (an algorithm name)
    return ("rsa", "ec") if es256 else ("rsa",)


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open every client of a gateway process, build the services on them, and close the
    clients again in reverse order."""
    ensure_keys(settings.keys_dir, key_kinds(settings))
    tokens = TokenService(
        KeyRing(settings.keys_dir),
        issuer=settings.issuer,
        audience=settings.audience,
        queue_ttl=settings.queue_token_ttl,
        queue_alg=settings.queue_token_alg,
        sign_threads=settings.sign_threads,
    )
    redis = connect(settings.redis_url, tls_ca=settings.redis_tls_ca, max_connections=256)
    link = NatsLink.from_settings(settings, "gateway")
    link.start()
    lane = ScriptLane.for_url(settings.redis_url, tls_ca=settings.redis_tls_ca)
    store = RoomStore(redis, outbox_max=settings.outbox_max, lane=lane)
    limiter = RateLimiter(settings.rate_limits, LimitWindows(redis, lane))
    salt = settings.ip_hash_salt or deployment_salt(settings.keys_dir)
    lines = LineBook(store, link) if settings.lines_in_memory else None
    people = People(store, tokens, limiter, salt=salt, lines=lines)
    site = Site(store, tokens, limiter, settings.site_key, lines)
    metrics = GatewayMetrics(tokens, settings.outbox_max, people.heartbeats, site.reports)
    live = LiveHub(
        people,
        store,
        link,
        metrics,
        lines,
        StreamLimits(
            per_place=settings.streams_per_place, per_address=settings.streams_per_address
        ),
    )
    guard = ConfigGuard(store)
    guard.start()
    try:
        yield Services(
            settings=settings,
            store=store,
            tokens=tokens,
            limiter=limiter,
            nats=link,
            metrics=metrics,
            people=people,
            site=site,
            operators=Operators(
                store,
                limiter,
                admin_keys(settings.admin_key),
                invites=people.invites,
                guard=guard,
            ),
            operations=Operations(
                store, link, tokens, metrics, settings.outbox_max, settings.metrics_token
            ),
            live=live,
        )
    finally:
        await guard.close()
        await live.close()
        if lines is not None:
            await lines.close()
        await link.close()
        if lane is not None:
            await lane.aclose()
        await redis.aclose()
        tokens.close()


def services_of(state: State) -> Services:
    svc: Services = state.services
    return svc


def _people(state: State) -> People:
    return services_of(state).people


def _site(state: State) -> Site:
    return services_of(state).site


def _operators(state: State) -> Operators:
    return services_of(state).operators


def _operations(state: State) -> Operations:
    return services_of(state).operations


def _live(state: State) -> LiveHub:
    return services_of(state).live


SERVICE_DEPENDENCIES = {
    "people": Provide(_people, sync_to_thread=False),
    "site": Provide(_site, sync_to_thread=False),
    "operators": Provide(_operators, sync_to_thread=False),
    "operations": Provide(_operations, sync_to_thread=False),
    "live": Provide(_live, sync_to_thread=False),
}
"""Every service by the name a handler asks for it with."""
