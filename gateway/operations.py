"""Readiness and metrics of one gateway process."""

from __future__ import annotations

import hmac
from typing import Any

from gateway.metrics import GatewayMetrics
from gateway.schemas import Ready
from shared.errors import RoomNotFound, RoomRecovering, StoreUnavailable
from shared.nats_link import NatsLink
from shared.store import RoomStore
from shared.tokens import TokenService


class Operations:
    def __init__(
        self,
        store: RoomStore,
        nats: NatsLink,
        tokens: TokenService,
        metrics: GatewayMetrics,
        outbox_max: int,
        metrics_token: str = "",
    ) -> None:
        self.store = store
        self.metrics_token = metrics_token
        self.tokens = tokens
        self.nats = nats
        self.metrics = metrics
        self.outbox_max = outbox_max

    async def readiness(self, *, nats_required: bool) -> Ready:
        """Ready when the data store answers and, unless NATS is optional, NATS is
        connected and no room's outbox holds more than the bound. With NATS optional (what
        load balancers ask) a gateway stays ready whatever NATS and the outboxes do: past
        the bound new joins get 503 events_backlog, everyone else is served."""
        store_ok = await self.store.ping()
        nats_ok = self.nats.connected
        backlog = 0
        if store_ok:
            try:
                backlog = await self.store.largest_outbox()
            except StoreUnavailable:
                store_ok = False
        outbox_ok = backlog <= self.outbox_max
        ready = store_ok and (not nats_required or (nats_ok and outbox_ok))
        return Ready(
            ready=ready, store=store_ok, nats=nats_ok, outbox_ok=outbox_ok, backlog=backlog
        )

    def jwks(self) -> dict[str, Any]:
        """Every published public key, for offline verification of access tokens."""
        return self.tokens.ring.jwks()

    def may_read_metrics(self, offered: str | None) -> bool:
        """/metrics on the main port answers only the bearer of WAITROOM_METRICS_TOKEN
        (compared in constant time); with no token set, nobody there."""
        if not self.metrics_token or offered is None:
            return False
        return hmac.compare_digest(offered.encode(), self.metrics_token.encode())

    async def metrics_text(self) -> bytes:
        """Prometheus text: this process's figures plus every room's, read now."""
        self.metrics.nats_up.set(1 if self.nats.connected else 0)
        ready = await self.readiness(nats_required=False)
        self.metrics.ready.set(1 if ready.ready else 0)
        try:
            rooms = await self.store.rooms()
            self.metrics.forget_rooms()
            for room in rooms:
                try:
                    self.metrics.set_room(room, await self.store.figures(room))
                except (RoomNotFound, RoomRecovering):
                    continue  # deleted since the listing, or being rebuilt (no config yet)
            self.metrics.store_up.set(1)
        except StoreUnavailable:
            self.metrics.store_up.set(0)
        return self.metrics.render()
