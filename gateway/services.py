"""The clients and services a gateway process holds, opened and closed by its lifespan."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from litestar.datastructures import State
from redis.asyncio import Redis

from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimiter
from shared.nats_link import NatsLink
from shared.settings import Settings
from shared.store import RoomStore
from shared.tokens import TokenService


@dataclass
class Services:
    settings: Settings
    redis: Redis
    store: RoomStore
    tokens: TokenService
    limiter: RateLimiter
    nats: NatsLink
    metrics: GatewayMetrics

    def ip_hash(self, ip: str) -> str:
        return hashlib.sha256(f"{self.settings.ip_hash_salt}\n{ip}".encode()).hexdigest()[:16]


def services_from_state(state: State) -> Services:
    svc: Services = state.services
    return svc
