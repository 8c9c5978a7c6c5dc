"""The clients and services a gateway process holds, opened and closed by its lifespan."""

from __future__ import annotations

import base64
import hashlib
import hmac
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

    def position_id_for(self, room: str, idempotency_key: str) -> str:
        mac = hmac.new(
            self.settings.ip_hash_salt.encode(), f"{room}\n{idempotency_key}".encode(), "sha256"
        )
        return base64.urlsafe_b64encode(mac.digest()[:12]).decode()


def services_from_state(state: State) -> Services:
    svc: Services = state.services
    return svc
